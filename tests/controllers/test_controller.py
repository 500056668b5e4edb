"""The controller's lifecycle: one instance per connection, hooks, accept, lifespan, HTTP."""

import functools
from typing import Any

import pytest

import tether
from tether import Provide, WebSocket, WebSocketController
from tether.testing import AppClient, HandshakeRejected, ServerClosed, connect

pytestmark = pytest.mark.anyio


async def test_one_instance_per_connection_with_websocket_and_scope_set() -> None:
    instances = []

    class Counter(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            assert self.websocket is websocket
            assert self.scope is websocket.scope
            instances.append(self)
            self.count = 0

        async def on_receive(self, data: str) -> str:
            self.count += 1
            return f"{self.count}"

    async with connect(Counter, "/") as first, connect(Counter, "/") as second:
        await first.send_text("a")
        await first.send_text("b")
        await second.send_text("c")
        assert [await first.receive_text(), await first.receive_text()] == ["1", "2"]
        assert await second.receive_text() == "1"
    assert len(instances) == 2
    assert instances[0] is not instances[1]


async def test_a_controller_without_hooks_accepts_and_ignores_messages() -> None:
    class Silent(WebSocketController):
        pass

    async with connect(Silent, "/") as ws:
        await ws.send_text("anybody there?")
        await ws.receive_nothing(0.05)


async def test_only_on_disconnect() -> None:
    codes = []

    class Listener(WebSocketController):
        async def on_disconnect(self, close_code: int) -> None:
            codes.append(close_code)

    async with connect(Listener, "/") as ws:
        await ws.send_text("ignored")
        await ws.close(4000)
    assert codes == [4000]


async def test_hooks_may_be_plain_functions() -> None:
    seen = []

    class Plain(WebSocketController):
        def on_connect(self, websocket: WebSocket) -> None:
            seen.append(("connect", websocket.application_state.name))

        def on_receive(self, data: str) -> str:
            return data.upper()

        def on_disconnect(self, close_code: int) -> None:
            seen.append(("disconnect", close_code))

    async with connect(Plain, "/") as ws:
        await ws.send_text("shout")
        assert await ws.receive_text() == "SHOUT"
    assert seen == [("connect", "CONNECTING"), ("disconnect", 1000)]


async def test_returning_from_on_connect_without_accepting_accepts() -> None:
    class Lazy(WebSocketController):
        async def on_connect(self) -> None:
            pass

        async def on_receive(self, websocket: WebSocket) -> str:
            return websocket.application_state.name

    async with connect(Lazy, "/") as ws:
        await ws.send_text("state?")
        assert await ws.receive_text() == "CONNECTED"


async def test_explicit_accept_with_a_subprotocol() -> None:
    class Picky(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept(subprotocol="chat.v2")
            await websocket.send_text("welcome")

    async with connect(Picky, "/", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert await ws.receive_text() == "welcome"


async def test_closing_in_on_connect_refuses_the_handshake_with_403() -> None:
    disconnects = []

    class Bouncer(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.close(code=1008)

        async def on_disconnect(self, close_code: int) -> None:
            disconnects.append(close_code)

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Bouncer, "/"):
            pass
    assert refused.value.status == 403
    assert refused.value.close_code == 1008
    assert disconnects == []  # never accepted: on_disconnect does not run


async def test_closing_after_accept_in_on_connect_skips_the_receive_loop() -> None:
    codes = []

    class Greeter(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text("bye")
            await websocket.close(4001, "done")

        async def on_disconnect(self, close_code: int, close_reason: str) -> None:
            codes.append((close_code, close_reason))

    async with connect(Greeter, "/") as ws:
        assert await ws.receive_text() == "bye"
        message = await ws.receive()
    assert message == {"type": "websocket.close", "code": 4001, "reason": "done"}
    assert codes == [(4001, "done")]


async def test_a_bare_controller_answers_the_lifespan_and_tears_down_app_dependencies() -> None:
    log = []

    def pool():
        log.append("pool up")
        yield "pool"
        log.append("pool down")

    class UsesPool(WebSocketController):
        async def on_receive(self, data: str, db: str = Provide(pool, scope="app")) -> str:
            return f"{db}:{data}"

    async with AppClient(UsesPool, lifespan="on") as client:
        for text in ("a", "b"):
            async with client.connect("/") as ws:
                await ws.send_text(text)
                assert await ws.receive_text() == f"pool:{text}"
        assert log == ["pool up"]  # created once, shared by both connections
    assert log == ["pool up", "pool down"]


async def test_a_connection_open_when_the_lifespan_ends_closes_1001_before_app_teardown() -> None:
    # Some servers (granian) end the lifespan before closing their connections.
    log = []

    def pool():
        log.append("pool up")
        yield "pool"
        log.append("pool down")

    class UsesPool(WebSocketController):
        async def on_receive(self, data: str, db: str = Provide(pool, scope="app")) -> str:
            return f"{db}:{data}"

        async def on_disconnect(self, close_code: int) -> None:
            log.append(f"on_disconnect {close_code}")

    async with connect(UsesPool, "/") as ws:
        async with tether.lifespan():
            await ws.send_text("a")
            assert await ws.receive_text() == "pool:a"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (1001, "server shutting down")
    assert log == ["pool up", "on_disconnect 1001", "pool down"]


async def test_an_http_request_to_a_bare_controller_gets_426(http_get: Any) -> None:
    class Chat(WebSocketController):
        pass

    status, headers, body = await http_get(Chat, "/")
    assert status == 426
    assert headers[b"upgrade"] == b"websocket"
    assert b"WebSocket" in body


def sync_wrapper(func: Any) -> Any:
    """A decorator as people write them: a plain def, whatever it wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


async def test_plain_def_hooks_returning_coroutines_are_awaited() -> None:
    seen: list[str] = []

    class Hooks(WebSocketController):
        encoding = "text"

        @sync_wrapper
        async def on_connect(self) -> None:
            seen.append("connect")

        @sync_wrapper
        async def on_receive(self, data: str) -> str:
            return data.upper()

        @sync_wrapper
        async def on_disconnect(self, close_code: int) -> None:
            seen.append(f"disconnect {close_code}")

    async with connect(Hooks, "/") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "HI"
    assert seen == ["connect", "disconnect 1000"]
