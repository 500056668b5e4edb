"""Messages: encodings, typed data, decode errors, `@on` routing and replies."""

import dataclasses
from typing import Annotated, Any, Literal, TypedDict, Union

import msgspec
import pydantic
import pytest

from tether import DecodeError, WebSocket, WebSocketController, on
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


async def closed_with(ws: Any) -> tuple[int, str]:
    """Wait for the server's close; return its code and reason."""
    with pytest.raises(ServerClosed) as closed:
        await ws.receive_text()
    return closed.value.code, closed.value.reason


# -- encodings ----------------------------------------------------------------------


class Echo(WebSocketController):
    async def on_receive(self, data: Any) -> Any:
        return data


class TextEcho(Echo):
    encoding = "text"


class BytesEcho(Echo):
    encoding = "bytes"


class JsonEcho(Echo):
    encoding = "json"


async def test_raw_encoding_passes_text_and_bytes_as_received() -> None:
    async with connect(Echo, "/") as ws:
        await ws.send_text("text")
        assert await ws.receive_text() == "text"
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_bytes() == b"\x00\xff"


async def test_text_encoding_closes_1003_on_a_binary_frame() -> None:
    async with connect(TextEcho, "/") as ws:
        await ws.send_text("ok")
        assert await ws.receive_text() == "ok"
        await ws.send_bytes(b"nope")
        assert (await closed_with(ws))[0] == 1003


async def test_bytes_encoding_closes_1003_on_a_text_frame() -> None:
    async with connect(BytesEcho, "/") as ws:
        await ws.send_bytes(b"ok")
        assert await ws.receive_bytes() == b"ok"
        await ws.send_text("nope")
        assert (await closed_with(ws))[0] == 1003


async def test_json_encoding_parses_text_and_utf8_binary_frames() -> None:
    async with connect(JsonEcho, "/") as ws:
        await ws.send_json({"n": 1})
        assert await ws.receive_json() == {"n": 1}
        await ws.send_json(["é", 2], mode="binary")
        assert await ws.receive_text() == '["é",2]'


async def test_json_encoding_closes_1007_on_malformed_json() -> None:
    disconnects = []

    class Strict(JsonEcho):
        async def on_disconnect(self, close_code: int) -> None:
            disconnects.append(close_code)

    async with connect(Strict, "/") as ws:
        await ws.send_text("{not json")
        code, reason = await closed_with(ws)
    assert code == 1007
    assert "malformed JSON" in reason
    assert disconnects == [1007]


async def test_json_encoding_closes_1007_on_invalid_utf8() -> None:
    async with connect(JsonEcho, "/") as ws:
        await ws.send_bytes(b'"\xff\xfe"')
        assert (await closed_with(ws))[0] == 1007


# -- typed data ---------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


class PointDict(TypedDict):
    x: int
    y: int


class PointModel(pydantic.BaseModel):
    x: int
    y: int


class PointStruct(msgspec.Struct):
    x: int
    y: int


@pytest.mark.parametrize("kind", [Point, PointDict, PointModel, PointStruct])
async def test_typed_data_is_validated(kind: type) -> None:
    class Points(WebSocketController):
        async def on_receive(self, data: kind) -> dict:  # type: ignore[valid-type]
            x, y = (data["x"], data["y"]) if isinstance(data, dict) else (data.x, data.y)
            return {"kind": type(data).__name__, "sum": x + y}

    async with connect(Points, "/") as ws:
        await ws.send_json({"x": 1, "y": 2})
        expected = "dict" if kind is PointDict else kind.__name__
        assert await ws.receive_json() == {"kind": expected, "sum": 3}
        await ws.send_json({"x": "one", "y": 2})
        code, reason = await closed_with(ws)
    assert code == 1007
    assert reason.startswith("invalid message")


async def test_list_of_items() -> None:
    class Batch(WebSocketController):
        async def on_receive(self, data: list[Point]) -> int:
            return sum(p.x * p.y for p in data)

    async with connect(Batch, "/") as ws:
        await ws.send_json([{"x": 2, "y": 3}, {"x": 1, "y": 1}])
        assert await ws.receive_text() == "7"
        await ws.send_json({"x": 2, "y": 3})
        assert (await closed_with(ws))[0] == 1007


class Join(pydantic.BaseModel):
    type: Literal["join"]
    room: str


class Say(pydantic.BaseModel):
    type: Literal["say"]
    text: str


Command = Annotated[Union[Join, Say], pydantic.Field(discriminator="type")]  # noqa: UP007


@dataclasses.dataclass
class Move:
    type: Literal["move"]
    dx: int


@dataclasses.dataclass
class Stop:
    type: Literal["stop"]


async def test_pydantic_discriminated_union() -> None:
    class Commands(WebSocketController):
        async def on_receive(self, data: Command) -> str:
            return type(data).__name__

    async with connect(Commands, "/") as ws:
        await ws.send_json({"type": "say", "text": "hi"})
        assert await ws.receive_text() == "Say"
        await ws.send_json({"type": "join", "room": "a"})
        assert await ws.receive_text() == "Join"
        await ws.send_json({"type": "dance"})
        assert (await closed_with(ws))[0] == 1007


async def test_union_of_dataclasses_tagged_by_literals() -> None:
    class Robot(WebSocketController):
        async def on_receive(self, data: Move | Stop) -> dict:
            return {"got": type(data).__name__, **dataclasses.asdict(data)}

    async with connect(Robot, "/") as ws:
        await ws.send_json({"type": "move", "dx": 3})
        assert await ws.receive_json() == {"got": "Move", "type": "move", "dx": 3}
        await ws.send_json({"type": "stop"})
        assert await ws.receive_json() == {"got": "Stop", "type": "stop"}
        await ws.send_json({"type": "jump"})
        assert (await closed_with(ws))[0] == 1007


async def test_overridden_on_decode_error_answers_and_keeps_the_connection() -> None:
    class Forgiving(WebSocketController):
        async def on_receive(self, data: Point) -> dict:
            return {"ok": data.x}

        async def on_decode_error(self, websocket: WebSocket, exc: DecodeError) -> None:
            await websocket.send_json({"error": exc.reason, "code": exc.code})

    async with connect(Forgiving, "/") as ws:
        await ws.send_text("{oops")
        error = await ws.receive_json()
        assert error["code"] == 1007
        assert "malformed JSON" in error["error"]
        await ws.send_json({"x": "bad", "y": 0})
        error = await ws.receive_json()
        assert error["code"] == 1007
        assert "x" in error["error"]
        await ws.send_json({"x": 5, "y": 0})
        assert await ws.receive_json() == {"ok": 5}


# -- @on routing --------------------------------------------------------------------


class Rooms(WebSocketController):
    async def on_connect(self) -> None:
        self.rooms: list[str] = []

    @on("join")
    async def join(self, data: Join) -> dict:
        self.rooms.append(data.room)
        return {"joined": data.room}

    @on("say")
    @on("shout")
    async def speak(self, data: dict) -> dict:
        return {"echo": data["text"], "in": self.rooms}

    async def on_receive(self, data: Any) -> dict:
        return {"fallback": data}


async def test_on_routes_by_the_type_key_with_on_receive_as_fallback() -> None:
    async with connect(Rooms, "/") as ws:
        await ws.send_json({"type": "join", "room": "lobby"})
        assert await ws.receive_json() == {"joined": "lobby"}
        await ws.send_json({"type": "shout", "text": "HI"})
        assert await ws.receive_json() == {"echo": "HI", "in": ["lobby"]}
        await ws.send_json({"type": "wave"})
        assert await ws.receive_json() == {"fallback": {"type": "wave"}}
        await ws.send_json([1, 2])
        assert await ws.receive_json() == {"fallback": [1, 2]}


async def test_routed_data_that_fails_validation_closes_1007() -> None:
    async with connect(Rooms, "/") as ws:
        await ws.send_json({"type": "join"})
        code, reason = await closed_with(ws)
    assert code == 1007
    assert "room" in reason


async def test_a_custom_event_key_and_an_unknown_event_without_fallback_closes_1003() -> None:
    class Actions(WebSocketController):
        event_key = "action"

        @on("ping")
        async def ping(self) -> dict:
            return {"action": "pong"}

    async with connect(Actions, "/") as ws:
        await ws.send_json({"action": "ping"})
        assert await ws.receive_json() == {"action": "pong"}
        await ws.send_json({"type": "ping"})
        code, reason = await closed_with(ws)
    assert (code, reason) == (1003, "the event key 'action' is missing")


async def test_routing_malformed_json_closes_1007() -> None:
    async with connect(Rooms, "/") as ws:
        await ws.send_text("{")
        assert (await closed_with(ws))[0] == 1007


# -- replies ------------------------------------------------------------------------


class Replies(WebSocketController):
    encoding = "text"

    async def on_receive(self, data: str) -> Any:
        return {
            "str": "plain",
            "bytes": b"\x01\x02",
            "dict": {"city": "Zürich", "emoji": "✓"},
            "list": [1, "two", None],
            "dataclass": Point(1, 2),
            "pydantic": PointModel(x=3, y=4),
            "msgspec": PointStruct(x=5, y=6),
            "none": None,
        }[data]


@pytest.mark.parametrize(
    ("ask", "frame"),
    [
        ("str", {"text": "plain"}),
        ("bytes", {"bytes": b"\x01\x02"}),
        ("dict", {"text": '{"city":"Zürich","emoji":"✓"}'}),
        ("list", {"text": '[1,"two",null]'}),
        ("dataclass", {"text": '{"x":1,"y":2}'}),
        ("pydantic", {"text": '{"x":3,"y":4}'}),
        ("msgspec", {"text": '{"x":5,"y":6}'}),
    ],
)
async def test_return_values_are_sent_back(ask: str, frame: dict) -> None:
    async with connect(Replies, "/") as ws:
        await ws.send_text(ask)
        message = await ws.receive()
    assert {k: v for k, v in message.items() if k != "type" and v is not None} == frame


async def test_none_sends_nothing() -> None:
    async with connect(Replies, "/") as ws:
        await ws.send_text("none")
        await ws.receive_nothing(0.05)
