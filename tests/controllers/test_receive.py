"""The receive loops: the same scenarios through the fast path and the general loop.

A controller of the common shape (one async `on_receive(data)`, no limits)
takes the fast path; `_fast_path = False` sends the same class through the
general loop. Every scenario below runs through both, and through the
general loop with limits set that it never reaches and with concurrent
handlers: each run must give the client the same frames and the hooks the
same calls, and those must be the ones the scenario expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
import pydantic
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import Message

from tether import (
    ConfigurationError,
    DecodeError,
    Provide,
    WebSocket,
    WebSocketController,
    WebSocketException,
    on,
)
from tether.brokers import MemoryBroker
from tether.controllers._receive import receive_fast, receive_fast_metered, receive_general
from tether.controllers.limits import RateLimit
from tether.metrics import TetherMetrics
from tether.testing import WebSocketSession, connect

pytestmark = pytest.mark.anyio

Frame = tuple[Any, ...]
Play = Callable[[WebSocketSession, type[WebSocketController]], Awaitable[None]]


# -- how a scenario runs ---------------------------------------------------------------


class Recorder(WebSocketController):
    """Records every hook call in `calls` (each variant class gets a list of its own)."""

    calls: list[tuple[Any, ...]]

    async def on_connect(self) -> None:
        self.calls.append(("connect",))

    async def on_disconnect(self, close_code: int, close_reason: str) -> None:
        self.calls.append(("disconnect", close_code, close_reason))

    async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
        self.calls.append(("error", type(exc).__name__))
        await super().on_error(websocket, exc)


def frame(message: Message) -> Frame:
    """What the client sees of one message from the app."""
    if message["type"] == "websocket.close":
        return ("close", message.get("code", 1000), message.get("reason") or "")
    if message.get("text") is not None:
        return ("text", message["text"])
    return ("bytes", message["bytes"])


class Client:
    """The scenario's side of the connection: what it sends, and every frame it gets."""

    def __init__(self, ws: WebSocketSession) -> None:
        self.ws = ws
        self.frames: list[Frame] = []

    async def send(self, data: str | bytes) -> None:
        await (self.ws.send_bytes(data) if isinstance(data, bytes) else self.ws.send_text(data))

    async def expect(self, count: int = 1) -> None:
        """Take the next `count` frames (a close counts as one)."""
        for _ in range(count):
            self.frames.append(frame(await self.ws.receive()))

    async def ask(self, data: str | bytes) -> None:
        """Send one message and take the one frame it brings back."""
        await self.send(data)
        await self.expect()


async def run(
    controller: type[Recorder], play: Callable[[Client], Awaitable[None]]
) -> tuple[list[Frame], list[tuple[Any, ...]]]:
    """One connection: `play` it, leave (closing with 1000 if still open); frames and calls."""
    controller.calls = []
    async with connect(controller, "/") as ws:
        client = Client(ws)
        await play(client)
    return client.frames, controller.calls


def variant(base: type[Recorder], shape: str) -> type[Recorder]:
    """`base` as a class of the given shape (a subclass, so it is compiled afresh)."""
    attrs: dict[str, Any] = {
        "fast path": {},
        "general loop": {"_fast_path": False},
        "general loop, limits at rest": {
            "max_message_size": 1 << 20,
            "rate_limit": RateLimit(messages=10_000, per=1),
            "idle_timeout": 60,
        },
        "general loop, concurrent handlers": {"max_concurrency": 4},
        "fast path, metered": {"metrics": TetherMetrics(registry=CollectorRegistry())},
        "general loop, metered": {
            "_fast_path": False,
            "metrics": TetherMetrics(registry=CollectorRegistry()),
        },
    }[shape]
    attrs["broker"] = MemoryBroker()  # each run's groups start empty
    cls = type(f"{base.__name__}_{shape.replace(' ', '_')}", (base,), attrs)
    expected = {"fast path": receive_fast, "fast path, metered": receive_fast_metered}.get(
        shape, receive_general
    )
    assert cls._receive_messages is expected, f"{cls.__name__} took the wrong loop"
    return cls


SHAPES = [
    "fast path",
    "general loop",
    "general loop, limits at rest",
    "general loop, concurrent handlers",
    "fast path, metered",
    "general loop, metered",
]


# -- controllers of the common shape -----------------------------------------------------


class TextEcho(Recorder):
    encoding = "text"

    async def on_receive(self, data: str) -> str:
        self.calls.append(("receive", data))
        return data


class BytesEcho(Recorder):
    encoding = "bytes"

    async def on_receive(self, data: bytes) -> bytes:
        self.calls.append(("receive", data))
        return data[::-1]


class JsonEcho(Recorder):
    encoding = "json"

    async def on_receive(self, data: Any) -> Any:
        self.calls.append(("receive", data))
        return data


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class PointStruct(msgspec.Struct):
    x: int
    y: int


class PointModel(pydantic.BaseModel):
    x: int
    y: int


class Typed(Recorder):
    async def on_receive(self, data: Point) -> Point:
        self.calls.append(("receive", data))
        return Point(data.y, data.x)


class Forgiving(TextEcho):
    async def on_decode_error(self, websocket: WebSocket, exc: DecodeError) -> None:
        self.calls.append(("decode error", exc.code))
        await websocket.send_text(f"bad frame ({exc.code})")


class Closing(Recorder):
    async def on_receive(self, data: str) -> str:
        self.calls.append(("receive", data))
        if data == "bye":
            await self.websocket.close(4000, "bye")  # what it returns is then not sent
        return f"re: {data}"


REPLIES: dict[str, Any] = {
    "str": "text",
    "bytes": b"\x00\xff",
    "dict": {"é": 1, "list": [1, 2]},
    "list": [1, "two", None],
    "int": 0,
    "false": False,
    "dataclass": Point(1, 2),
    "struct": PointStruct(3, 4),
    "model": PointModel(x=5, y=6),
    "none": None,
}


class Replies(Recorder):
    async def on_receive(self, data: str) -> Any:
        self.calls.append(("receive", data))
        return REPLIES[data]


class Failing(Recorder):
    async def on_receive(self, data: str) -> str:
        self.calls.append(("receive", data))
        if data == "raise":
            raise RuntimeError("boom")
        if data == "refuse":
            raise WebSocketException(4003, "not allowed")
        return data


class Room(Recorder):
    broker = MemoryBroker()

    async def on_receive(self, data: str) -> str | None:
        self.calls.append(("receive", data))
        if data == "join":
            await self.join("room")
            return "joined"
        await self.publish("room", {"said": data})
        return None


class Lobby(Recorder):
    """Joins in on_connect, before its receive loop starts."""

    broker = MemoryBroker()

    async def on_connect(self) -> None:
        await super().on_connect()
        await self.join("lobby")

    async def on_receive(self, data: str) -> str:
        self.calls.append(("receive", data))
        return data


def decode_error(cls: type[Recorder], frame: str | bytes) -> tuple[int, str]:
    """The code and reason the codec gives `frame` (its wording is the codec's, not the loop's)."""
    key = "bytes" if isinstance(frame, bytes) else "text"
    try:
        cls._plan.receive.decode({"type": "websocket.receive", key: frame})
    except DecodeError as exc:
        return exc.code, exc.reason
    raise AssertionError(f"{frame!r} decodes without an error")


async def echo(client: Client) -> None:
    await client.ask("a")
    await client.ask("é" * 3)
    await client.ws.close(1000)


async def client_closes_with_a_code(client: Client) -> None:
    await client.ask("a")
    await client.ws.close(4001, "done")


async def wrong_frame(client: Client) -> None:
    await client.ask("a")
    await client.ask(b"binary")


async def bad_json(client: Client) -> None:
    await client.ask('{"x": 1, "y": 2}')
    await client.ask('{"x": 1')


async def invalid_data(client: Client) -> None:
    await client.ask('{"x": "one"}')


async def decode_error_answered(client: Client) -> None:
    await client.ask(b"binary")
    await client.ask("still here")
    await client.ws.close(1000)


async def hook_closes(client: Client) -> None:
    await client.ask("hello")
    await client.ask("bye")


async def every_reply_type(client: Client) -> None:
    for name in REPLIES:
        if name != "none":
            await client.ask(name)
    await client.send("none")  # nothing comes back: the next reply is the next frame
    await client.ask("str")
    await client.ws.close(1000)


async def hook_raises(client: Client) -> None:
    await client.ask("fine")
    await client.ask("raise")


async def hook_refuses(client: Client) -> None:
    await client.ask("refuse")


async def join_and_publish(client: Client) -> None:
    await client.ask("join")
    await client.ask("hello")  # published to the group, which this connection is in
    await client.ws.close(1000)


async def joined_before_the_loop(client: Client, broker: MemoryBroker) -> None:
    await broker.publish("lobby", "news")
    await client.expect()
    await client.ask("a")
    await client.ws.close(1000)


SCENARIOS: list[tuple[str, type[Recorder], Any, list[Frame], list[tuple[Any, ...]]]] = [
    (
        "echo",
        TextEcho,
        echo,
        [("text", "a"), ("text", "ééé")],
        [("connect",), ("receive", "a"), ("receive", "ééé"), ("disconnect", 1000, "")],
    ),
    (
        "bytes echo",
        BytesEcho,
        lambda client: client.ask(b"abc"),
        [("bytes", b"cba")],
        [("connect",), ("receive", b"abc"), ("disconnect", 1000, "")],
    ),
    (
        "json echo",
        JsonEcho,
        lambda client: client.ask('{"n": [1, "é"]}'),
        [("text", '{"n":[1,"é"]}')],
        [("connect",), ("receive", {"n": [1, "é"]}), ("disconnect", 1000, "")],
    ),
    (
        "client closes with a code",
        TextEcho,
        client_closes_with_a_code,
        [("text", "a")],
        [("connect",), ("receive", "a"), ("disconnect", 4001, "done")],
    ),
    (
        "a frame of the wrong kind",
        TextEcho,
        wrong_frame,
        [("text", "a"), ("close", *decode_error(TextEcho, b"binary"))],
        [("connect",), ("receive", "a"), ("disconnect", *decode_error(TextEcho, b"binary"))],
    ),
    (
        "malformed JSON",
        Typed,
        bad_json,
        [("text", '{"x":2,"y":1}'), ("close", *decode_error(Typed, '{"x": 1'))],
        [("connect",), ("receive", Point(1, 2)), ("disconnect", *decode_error(Typed, '{"x": 1'))],
    ),
    (
        "data that fails validation",
        Typed,
        invalid_data,
        [("close", *decode_error(Typed, '{"x": "one"}'))],
        [("connect",), ("disconnect", *decode_error(Typed, '{"x": "one"}'))],
    ),
    (
        "a decode error answered by on_decode_error",
        Forgiving,
        decode_error_answered,
        [("text", "bad frame (1003)"), ("text", "still here")],
        [
            ("connect",),
            ("decode error", 1003),
            ("receive", "still here"),
            ("disconnect", 1000, ""),
        ],
    ),
    (
        "the hook closes",
        Closing,
        hook_closes,
        [("text", "re: hello"), ("close", 4000, "bye")],
        [("connect",), ("receive", "hello"), ("receive", "bye"), ("disconnect", 4000, "bye")],
    ),
    (
        "return values of each type",
        Replies,
        every_reply_type,
        [
            ("text", "text"),
            ("bytes", b"\x00\xff"),
            ("text", '{"é":1,"list":[1,2]}'),
            ("text", '[1,"two",null]'),
            ("text", "0"),
            ("text", "false"),
            ("text", '{"x":1,"y":2}'),
            ("text", '{"x":3,"y":4}'),
            ("text", '{"x":5,"y":6}'),
            ("text", "text"),
        ],
        [
            ("connect",),
            *(("receive", name) for name in REPLIES),
            ("receive", "str"),
            ("disconnect", 1000, ""),
        ],
    ),
    (
        "the hook raises",
        Failing,
        hook_raises,
        [("text", "fine"), ("close", 1011, "Internal error")],
        [
            ("connect",),
            ("receive", "fine"),
            ("receive", "raise"),
            ("error", "RuntimeError"),
            ("disconnect", 1011, "Internal error"),
        ],
    ),
    (
        "the hook raises WebSocketException",
        Failing,
        hook_refuses,
        [("close", 4003, "not allowed")],
        [("connect",), ("receive", "refuse"), ("disconnect", 4003, "not allowed")],
    ),
    (
        "join and publish during the loop",
        Room,
        join_and_publish,
        [("text", "joined"), ("text", '{"said":"hello"}')],
        [("connect",), ("receive", "join"), ("receive", "hello"), ("disconnect", 1000, "")],
    ),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("base", "play", "frames", "calls"),
    [scenario[1:] for scenario in SCENARIOS],
    ids=[scenario[0] for scenario in SCENARIOS],
)
async def test_every_loop_gives_the_same_frames_and_hook_calls(
    shape: str,
    base: type[Recorder],
    play: Callable[[Client], Awaitable[None]],
    frames: list[Frame],
    calls: list[tuple[Any, ...]],
) -> None:
    assert await run(variant(base, shape), play) == (frames, calls)


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_loop_delivers_groups_joined_in_on_connect(shape: str) -> None:
    cls = variant(Lobby, shape)
    got = await run(cls, lambda client: joined_before_the_loop(client, cls.broker))
    assert got == (
        [("text", "news"), ("text", "a")],
        [("connect",), ("receive", "a"), ("disconnect", 1000, "")],
    )


# -- what only the general loop does: limits, idleness, routing -----------------------------

IN_ORDER_AND_CONCURRENT = ["in order", "concurrent"]


def general(base: type[Recorder], shape: str, **attrs: Any) -> type[Recorder]:
    """`base` with `attrs`, one message at a time or with up to three handlers at once."""
    attrs["max_concurrency"] = 1 if shape == "in order" else 3
    cls = type(f"{base.__name__}_{shape.replace(' ', '_')}", (base,), attrs)
    assert cls._receive_messages is receive_general
    return cls


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
async def test_an_idle_connection_closes_with_1001(shape: str) -> None:
    async def play(client: Client) -> None:
        await client.ask("a")
        await client.expect()  # nothing more is sent: the idle timeout closes

    got = await run(general(TextEcho, shape, idle_timeout=0.2), play)
    assert got == (
        [("text", "a"), ("close", 1001, "idle timeout")],
        [("connect",), ("receive", "a"), ("disconnect", 1001, "idle timeout")],
    )


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
async def test_over_the_rate_limit_closes_with_1008(shape: str) -> None:
    async def play(client: Client) -> None:
        await client.ask("a")
        await client.ask("b")
        await client.ask("c")

    got = await run(general(TextEcho, shape, rate_limit=RateLimit(messages=2, per=60)), play)
    assert got == (
        [("text", "a"), ("text", "b"), ("close", 1008, "rate limit exceeded")],
        [
            ("connect",),
            ("receive", "a"),
            ("receive", "b"),
            ("disconnect", 1008, "rate limit exceeded"),
        ],
    )


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
async def test_a_lenient_rate_limit_drops_and_goes_on(shape: str) -> None:
    limit = RateLimit(messages=2, per=60, action="drop")

    async def play(client: Client) -> None:
        await client.ask("a")
        await client.ask("b")
        await client.send("dropped")
        await client.ws.close(4000)

    got = await run(general(TextEcho, shape, rate_limit=limit), play)
    assert got == (
        [("text", "a"), ("text", "b")],
        [("connect",), ("receive", "a"), ("receive", "b"), ("disconnect", 4000, "")],
    )


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
async def test_a_message_over_max_message_size_closes_with_1009(shape: str) -> None:
    async def play(client: Client) -> None:
        await client.ask("abcd")
        await client.ask("abcde")

    got = await run(general(TextEcho, shape, max_message_size=4), play)
    assert got == (
        [("text", "abcd"), ("close", 1009, "message too big")],
        [("connect",), ("receive", "abcd"), ("disconnect", 1009, "message too big")],
    )


def get_counter() -> list[int]:
    return [0]


class Routed(Recorder):
    encoding = "json"

    @on("ping")
    async def ping(self, data: dict) -> dict:
        self.calls.append(("ping", data))
        return {"type": "pong"}

    def on_receive(self, data: Any, counter: list = Provide(get_counter, scope="message")) -> str:
        self.calls.append(("receive", data, counter))
        return "fallback"


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
async def test_routed_hooks_and_message_scoped_values_take_the_general_loop(shape: str) -> None:
    async def play(client: Client) -> None:
        await client.ask('{"type": "ping"}')
        await client.ask('{"type": "other"}')
        await client.ask("[1")

    got = await run(general(Routed, shape), play)
    malformed = decode_error(JsonEcho, "[1")  # routing parses JSON as the json encoding does
    assert got == (
        [("text", '{"type":"pong"}'), ("text", "fallback"), ("close", *malformed)],
        [
            ("connect",),
            ("ping", {"type": "ping"}),
            ("receive", {"type": "other"}, [0]),
            ("disconnect", *malformed),
        ],
    )


async def test_with_concurrent_handlers_the_client_leaving_cancels_those_in_flight() -> None:
    class Slow(Recorder):
        max_concurrency = 2

        async def on_receive(self, data: str) -> None:
            self.calls.append(("receive", data))
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.calls.append(("cancelled", data))
                raise

    async def play(client: Client) -> None:
        await client.send("a")
        with anyio.fail_after(2):
            while ("receive", "a") not in Slow.calls:
                await anyio.sleep(0.01)
        await client.ws.close(4000)

    got = await run(Slow, play)
    calls = [("connect",), ("receive", "a"), ("cancelled", "a"), ("disconnect", 4000, "")]
    assert got == ([], calls)


async def test_with_concurrent_handlers_a_close_lets_those_in_flight_finish() -> None:
    closed = anyio.Event()

    class Closer(Recorder):
        max_concurrency = 2

        async def on_receive(self, data: str) -> None:
            self.calls.append(("receive", data))
            if data == "close":
                await self.websocket.close(4001, "done")
                closed.set()
            else:
                await closed.wait()  # still running when the other handler closes
                self.calls.append(("finished", data))

    async def play(client: Client) -> None:
        await client.send("slow")
        await client.ask("close")

    got = await run(Closer, play)
    assert got == (
        [("close", 4001, "done")],
        [
            ("connect",),
            ("receive", "slow"),
            ("receive", "close"),
            ("finished", "slow"),
            ("disconnect", 4001, "done"),
        ],
    )


class Silent(Recorder):
    """No hook for messages: they are read and dropped."""


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
async def test_without_a_message_hook_messages_are_dropped(shape: str) -> None:
    async def play(client: Client) -> None:
        await client.send("ignored")
        await client.send(b"ignored too")
        await client.ws.close(4002, "enough")

    got = await run(general(Silent, shape), play)
    assert got == ([], [("connect",), ("disconnect", 4002, "enough")])


def test_only_the_common_shape_takes_the_fast_path() -> None:
    class Limited(TextEcho):
        rate_limit = RateLimit(messages=10)

    class DataSecond(Recorder):
        async def on_receive(self, websocket: WebSocket, data: str) -> None: ...

    class PerMessage(Recorder):
        async def on_receive(
            self, data: str, counter: list = Provide(get_counter, scope="message")
        ) -> None: ...

    assert TextEcho._receive_messages is receive_fast
    assert Typed._receive_messages is receive_fast
    for cls in (Limited, DataSecond, PerMessage, Routed, Silent):
        assert cls._receive_messages is receive_general, cls.__name__


# -- a websocket class that overrides receive and send -----------------------------------


class Logged(WebSocket):
    """Logs every ASGI message through its own receive and send."""

    log: list[tuple[str, Any]]

    async def receive(self) -> Message:
        message = await super().receive()
        self.log.append(("in", message["type"], message.get("text")))
        return message

    async def send(self, message: Message) -> None:
        self.log.append(("out", message["type"], message.get("text")))
        await super().send(message)


CLOSED = ("websocket.close", None)  # the message closes the connection
OVERRIDE_CASES = [
    # What the client sends, and what goes out through the websocket's send for it.
    (TextEcho, [("hi", ("websocket.send", "hi"))]),
    (Routed, [('{"type": "ping"}', ("websocket.send", '{"type":"pong"}')), ("[1", CLOSED)]),
    (Silent, [("dropped", None)]),
    # The second reply is the group's message, sent by the delivery task.
    (Room, [("join", ("websocket.send", "joined")), ("hi", ("websocket.send", '{"said":"hi"}'))]),
]


@pytest.mark.parametrize("shape", IN_ORDER_AND_CONCURRENT)
@pytest.mark.parametrize(
    ("base", "exchanges"), OVERRIDE_CASES, ids=[case[0].__name__ for case in OVERRIDE_CASES]
)
async def test_a_websocket_class_overriding_receive_and_send_sees_every_frame(
    shape: str, base: type[Recorder], exchanges: list[tuple[str, tuple[str, Any] | None]]
) -> None:
    log: list[tuple[str, Any]] = []
    attrs: dict[str, Any] = {"websocket_class": type("Logging", (Logged,), {"log": log})}
    attrs["max_concurrency"] = 1 if shape == "in order" else 3
    if base is Room:
        attrs["broker"] = MemoryBroker()
    cls = type(f"{base.__name__}Logging", (base,), attrs)

    async def play(client: Client) -> None:
        for message, out in exchanges:
            await (client.ask(message) if out is not None else client.send(message))
        if exchanges[-1][1] is not CLOSED:
            await client.ws.close(4001)

    await run(cls, play)
    expected = [("in", "websocket.connect", None), ("out", "websocket.accept", None)]
    for message, out in exchanges:
        expected.append(("in", "websocket.receive", message))
        if out is not None:
            expected.append(("out", *out))
    # After its own close the in-order loop returns at once; beside concurrent handlers
    # it is already waiting for the next message, and reads the server's disconnect.
    read_disconnect = exchanges[-1][1] is not CLOSED or shape == "concurrent"
    assert log == [*expected, *[("in", "websocket.disconnect", None)] * read_disconnect]


def test_the_fast_path_stays_with_a_websocket_class_overriding_receive_and_send() -> None:
    class Echoing(TextEcho):
        websocket_class = Logged

    assert Echoing._plan.through_websocket
    assert Echoing._receive_messages is receive_fast
    assert not TextEcho._plan.through_websocket


def test_a_websocket_class_that_is_not_tethers_fails_at_class_definition() -> None:
    from starlette.websockets import WebSocket as StarletteWebSocket

    with pytest.raises(ConfigurationError, match=r"Plain\.websocket_class"):

        class Plain(WebSocketController):
            websocket_class = StarletteWebSocket  # type: ignore[assignment]
