"""Errors and close codes: what the client sees and what on_disconnect is told."""

import logging

import anyio
import pytest

from tether import WebSocket, WebSocketController, WebSocketException
from tether.testing import HandshakeRejected, ServerClosed, connect

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


async def test_websocket_exception_after_accept_closes_with_its_code() -> None:
    codes = []

    class Kicks(WebSocketController):
        async def on_receive(self, data: str) -> None:
            raise WebSocketException(4403, "not allowed")

        async def on_disconnect(self, close_code: int) -> None:
            codes.append(close_code)

    async with connect(Kicks, "/") as ws:
        await ws.send_text("let me in")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4403, "not allowed")
    assert codes == [4403]


async def test_websocket_exception_before_accept_refuses_with_403() -> None:
    class Gate(WebSocketController):
        async def on_connect(self) -> None:
            raise WebSocketException(1008, "no ticket")

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Gate, "/"):
            pass
    assert refused.value.status == 403
    assert refused.value.reason == "no ticket"


async def test_an_unhandled_exception_is_logged_and_closes_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codes = []

    class Fragile(WebSocketController):
        async def on_receive(self, data: str) -> None:
            raise Boom("kaput")

        async def on_disconnect(self, close_code: int) -> None:
            codes.append(close_code)

    caplog.set_level(logging.ERROR, logger="tether")
    async with connect(Fragile, "/") as ws:
        await ws.send_text("hit")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert closed.value.code == 1011
    assert codes == [1011]
    [record] = [r for r in caplog.records if r.name == "tether"]
    assert "Fragile" in record.getMessage()
    assert isinstance(record.exc_info[1], Boom)


async def test_an_exception_in_on_connect_refuses_the_handshake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(WebSocketController):
        async def on_connect(self) -> None:
            raise Boom("no db")

        async def on_disconnect(self) -> None:
            raise AssertionError("never accepted")

    caplog.set_level(logging.ERROR, logger="tether")
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Broken, "/"):
            pass
    assert refused.value.status == 500  # the test client supports denial responses
    assert any(isinstance(r.exc_info and r.exc_info[1], Boom) for r in caplog.records)


async def test_overridden_on_error() -> None:
    codes = []

    class Apologetic(WebSocketController):
        async def on_receive(self, data: str) -> None:
            raise Boom(data)

        async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
            await websocket.send_text(f"sorry: {exc}")
            await websocket.close(4500, type(exc).__name__)

        async def on_disconnect(self, close_code: int) -> None:
            codes.append(close_code)

    async with connect(Apologetic, "/") as ws:
        await ws.send_text("bad input")
        assert await ws.receive_text() == "sorry: bad input"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4500, "Boom")
    assert codes == [4500]


async def test_on_error_that_keeps_the_connection_open_still_closes_1011() -> None:
    class Shrugs(WebSocketController):
        async def on_receive(self, data: str) -> None:
            raise Boom(data)

        async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
            pass

    async with connect(Shrugs, "/") as ws:
        await ws.send_text("x")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert closed.value.code == 1011


@pytest.mark.parametrize("code", [1000, 1001, 4000])
async def test_on_disconnect_gets_the_clients_code_exactly_once(code: int) -> None:
    codes = []

    class Tracks(WebSocketController):
        async def on_disconnect(self, close_code: int) -> None:
            codes.append(close_code)

    async with connect(Tracks, "/") as ws:
        await ws.send_text("hello")
        await ws.close(code)
    assert codes == [code]


async def test_on_disconnect_gets_1005_when_the_client_sent_no_code() -> None:
    codes = []

    class Tracks(WebSocketController):
        async def on_disconnect(self, close_code: int) -> None:
            codes.append(close_code)

    async with connect(Tracks, "/") as ws:
        await ws.send({"type": "websocket.disconnect"})
        with anyio.fail_after(2):
            while not codes:
                await anyio.sleep(0.01)
    assert codes == [1005]


async def test_a_send_to_a_client_that_has_gone_counts_as_a_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = []
    replying = anyio.Event()
    client_gone = anyio.Event()

    class Slow(WebSocketController):
        async def on_receive(self, data: str) -> str:
            replying.set()
            await client_gone.wait()
            return "too late"

        async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
            events.append(("error", exc))

        async def on_disconnect(self, close_code: int) -> None:
            events.append(("disconnect", close_code))

    caplog.set_level(logging.ERROR, logger="tether")
    async with connect(Slow, "/") as ws:
        await ws.send_text("question")
        with anyio.fail_after(2):
            await replying.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.close, 4001)
            await anyio.sleep(0.01)
            client_gone.set()
    assert events == [("disconnect", 4001)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_websocket_exception_inside_a_task_group_keeps_its_code() -> None:
    class Nested(WebSocketController):
        async def on_receive(self, data: str) -> None:
            async def worker() -> None:
                raise WebSocketException(4009, "from a task")

            async with anyio.create_task_group() as tg:
                tg.start_soon(worker)
                await anyio.sleep(1)

    async with connect(Nested, "/") as ws:
        await ws.send_text("go")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4009, "from a task")


async def test_websocket_exception_inside_a_task_group_in_on_connect_refuses() -> None:
    class Nested(WebSocketController):
        async def on_connect(self) -> None:
            async def check() -> None:
                raise WebSocketException(1008, "denied")

            async with anyio.create_task_group() as tg:
                tg.start_soon(check)

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Nested, "/"):
            pass
    assert refused.value.status == 403


@pytest.mark.parametrize("how", ["close", "exception"])
async def test_long_close_reasons_are_cut_to_123_bytes_on_a_character_boundary(how: str) -> None:
    reason = "é" * 100  # 200 bytes in UTF-8

    class Verbose(WebSocketController):
        async def on_receive(self, websocket: WebSocket) -> None:
            if how == "close":
                await websocket.close(4000, reason)
            else:
                raise WebSocketException(4000, reason)

    async with connect(Verbose, "/") as ws:
        await ws.send_text("bye")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert closed.value.code == 4000
    assert closed.value.reason == "é" * 61
    assert len(closed.value.reason.encode()) <= 123


async def test_an_exception_in_one_connection_does_not_affect_another() -> None:
    class Echo(WebSocketController):
        async def on_receive(self, data: str) -> str:
            if data == "crash":
                raise Boom("only me")
            return data

    async with connect(Echo, "/") as healthy:
        async with connect(Echo, "/", raise_app_exceptions=False) as doomed:
            await doomed.send_text("crash")
            with pytest.raises(ServerClosed) as closed:
                await doomed.receive_text()
            assert closed.value.code == 1011
        await healthy.send_text("still here")
        assert await healthy.receive_text() == "still here"


async def test_an_exception_in_on_disconnect_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Sloppy(WebSocketController):
        async def on_disconnect(self) -> None:
            raise Boom("cleanup failed")

    caplog.set_level(logging.ERROR, logger="tether")
    async with connect(Sloppy, "/") as ws:
        await ws.close()
    assert any("on_disconnect" in r.getMessage() for r in caplog.records)
