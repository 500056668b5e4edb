"""A connection: frames both ways, the handshake's answer, closing, timeouts, app errors.

Each test runs under asyncio and under trio (see `tests/conftest.py`). Every
wait is bounded: the client's own timeouts, plus `anyio.fail_after` where a
test measures one.
"""

from __future__ import annotations

import contextlib

import anyio
import pytest
import sniffio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect
from testing_apps import echo_app

from tether import Query, WebSocketController
from tether.testing import (
    ClientDisconnected,
    HandshakeRejected,
    ReceiveTimeout,
    ServerClosed,
    connect,
)

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- messages


async def test_echo_text_bytes_and_json_with_a_bare_asgi_app() -> None:
    async with connect(echo_app, "/") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes() == b"\x00\x01"
        await ws.send_json({"n": 1, "name": "Zoë"})
        assert await ws.receive_json() == {"n": 1, "name": "Zoë"}
        await ws.send_json([1, 2], mode="binary")
        assert await ws.receive_json() == [1, 2]
        await ws.send_text("raw")
        assert await ws.receive() == {"type": "websocket.send", "text": "raw", "bytes": None}


async def test_runs_on_the_tests_own_event_loop(anyio_backend: str) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(sniffio.current_async_library())
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    async with connect(app):
        pass
    assert seen == [anyio_backend]


async def test_a_frame_of_the_wrong_kind_fails_with_what_arrived() -> None:
    async with connect(echo_app) as ws:
        await ws.send_bytes(b"binary")
        with pytest.raises(AssertionError, match="expected a text message, the app sent a binary"):
            await ws.receive_text()


# --------------------------------------------------------------------------- the handshake


async def test_subprotocol_negotiation(app: Starlette) -> None:
    async with connect(app, "/ws/negotiate", subprotocols=["v1.chat", "v2.chat"]) as ws:
        assert ws.subprotocol == "v2.chat"
        assert (b"x-server", b"tether") in ws.accept_headers
        assert await ws.receive_text() == "speaking v2.chat"

    async with connect(app, "/ws/negotiate") as ws:
        assert ws.subprotocol is None
        assert await ws.receive_text() == "speaking None"


async def test_accepting_a_subprotocol_the_client_did_not_offer_fails() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "made-up"})
        await receive()

    with pytest.raises(AssertionError, match="'made-up', which the client did not offer"):
        async with connect(app, subprotocols=["real"]):
            pass


async def test_closing_before_accept_refuses_the_handshake_with_403(app: Starlette) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(app, "/ws/private"):
            pytest.fail("the handshake should have been refused")
    assert refused.value.status == 403
    assert refused.value.close_code == 1008
    assert refused.value.reason == "token required"
    assert "HTTP 403" in str(refused.value)

    async with connect(app, "/ws/private?token=t") as ws:
        assert await ws.receive_text() == "welcome"


async def test_a_denial_response_carries_status_headers_and_body(app: Starlette) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(app, "/ws/private?deny=response"):
            pass
    assert refused.value.status == 401
    assert refused.value.body == b"token required"
    assert refused.value.text == "token required"
    assert (b"www-authenticate", b"Bearer") in refused.value.headers
    assert refused.value.close_code is None


async def test_an_app_that_never_answers_the_handshake_times_out() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(3):
        with pytest.raises(ReceiveTimeout, match="neither accepted nor refused"):
            async with connect(app, timeout=0.2):
                pass


async def test_a_refusal_says_why_the_app_refused() -> None:
    class Room(WebSocketController):
        async def on_connect(self, token: int = Query()) -> None:
            pass

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Room, "/ws?token=abc"):
            pass
    # A real server only answers 403; the test client shows the ParameterError text
    assert refused.value.status == 403
    assert refused.value.close_code == 1008
    assert refused.value.reason.startswith("query parameter 'token'")
    assert str(refused.value).startswith(
        "the app rejected the WebSocket handshake with HTTP 403: query parameter 'token'"
    )
    assert "query parameter 'token'" in repr(refused.value)  # what pytest and logs show


async def test_a_refusal_without_a_reason_says_so() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1000})

    with pytest.raises(HandshakeRejected, match="giving no reason") as refused:
        async with connect(app):
            pass
    assert "HTTP 403" in str(refused.value)


async def test_a_denial_response_shows_its_body() -> None:
    detail = "token required: " + "x" * 200  # longer than a line, still shown whole

    class Guarded(WebSocketController):
        async def on_connect(self) -> None:
            raise HTTPException(401, detail)

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Guarded, "/ws"):
            pass
    assert refused.value.status == 401
    assert str(refused.value) == f"the app rejected the WebSocket handshake with HTTP 401: {detail}"


async def test_without_the_denial_extension_an_app_refuses_by_closing() -> None:
    class Guarded(WebSocketController):
        async def on_connect(self) -> None:
            raise HTTPException(401, "who are you")

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Guarded, "/ws", extensions={}) as ws:
            pytest.fail(f"refused, not {ws}")
    assert (refused.value.status, refused.value.close_code) == (403, 1008)
    assert refused.value.reason == "who are you"


async def test_the_client_can_leave_before_the_app_answers() -> None:
    events: list[object] = []
    decided = anyio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await decided.wait()  # a slow on_connect: a database, a remote check
        await send({"type": "websocket.accept"})  # succeeds, as on a server
        events.append(await receive())

    async with connect(slow, wait_for_handshake=False) as ws:
        with pytest.raises(ReceiveTimeout, match="has not answered the handshake yet"):
            await ws.handshake(timeout=0)
        await ws.close(4000, wait=False)  # no WebSocket yet: the client can only drop
        decided.set()
    assert events == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


async def test_the_first_receive_waits_for_the_handshake() -> None:
    async with connect(echo_app, wait_for_handshake=False) as ws:
        await ws.send_text("queued before the answer")
        assert await ws.receive_text() == "queued before the answer"
        await ws.handshake()  # already answered: returns at once

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008, "reason": "no"})

    async with connect(refuse, wait_for_handshake=False) as ws:
        with pytest.raises(HandshakeRejected, match="no"):
            await ws.receive_text()
        with pytest.raises(HandshakeRejected):  # the same answer, every time
            await ws.handshake()


# --------------------------------------------------------------------------- closing


async def test_the_server_closing_is_reported_with_code_and_reason(app: Starlette) -> None:
    async with connect(app, "/ws/close") as ws:
        await ws.send_text("one")
        assert await ws.receive_text() == "one"
        await ws.send_text("bye")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (4001, "see you")
        assert "code 4001" in str(closed.value)
        assert "waiting for a text message" in str(closed.value)
        assert (ws.close_code, ws.close_reason) == (4001, "see you")
        # Starlette TestClient style keeps working: ServerClosed is a WebSocketDisconnect
        with pytest.raises(WebSocketDisconnect):
            await ws.receive_json()
        with pytest.raises(ServerClosed):
            await ws.send_text("too late")


async def test_the_raw_receive_returns_the_close_message_once(app: Starlette) -> None:
    async with connect(app, "/ws/close") as ws:
        assert ws.close_code is None
        await ws.send_text("bye")
        message = await ws.receive()
        assert message == {"type": "websocket.close", "code": 4001, "reason": "see you"}
        with pytest.raises(ServerClosed):
            await ws.receive()


async def test_after_closing_the_app_receives_a_disconnect() -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        received.append(await receive())
        received.append(await receive())

    async with connect(app) as ws:
        await ws.send_text("sent while the server closes")
        with pytest.raises(ServerClosed):
            await ws.receive_text()
    disconnect = {"type": "websocket.disconnect", "code": 4000, "reason": "done"}
    assert received == [disconnect, disconnect]


async def test_the_client_close_code_and_reason_reach_the_app() -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    async with connect(app) as ws:
        await ws.close(code=4002, reason="leaving")
        # close() waits for the app to return, so its effects are visible here
        assert received == [{"type": "websocket.disconnect", "code": 4002, "reason": "leaving"}]


async def test_leaving_the_block_disconnects_and_waits_for_teardown(app: Starlette) -> None:
    async with connect(app, "/ws/recorder") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "HI"
    # on_disconnect sleeps before recording: it ran to the end instead of being cancelled
    assert app.state.events == ["connect", "receive hi", "disconnect 1000"]


async def test_close_runs_on_disconnect_before_returning(app: Starlette) -> None:
    async with connect(app, "/ws/recorder") as ws:
        await ws.close(code=1001)
        assert app.state.events == ["connect", "disconnect 1001"]


async def test_sending_after_the_client_left_raises_oserror_in_the_app(app: Starlette) -> None:
    async with connect(app, "/ws/ticker") as ws:
        assert await ws.receive_text() == "tick"
    # Starlette turns the OSError from send() into WebSocketDisconnect(1006)
    assert app.state.events == ["ticker stopped 1006"]

    errors: list[BaseException] = []

    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "anyone?"})
        except OSError as exc:
            errors.append(exc)

    async with connect(bare):
        pass
    assert len(errors) == 1
    assert isinstance(errors[0], ClientDisconnected)


async def test_close_without_waiting_returns_at_once() -> None:
    finished = anyio.Event()
    allowed = anyio.Event()

    async def slow_teardown(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await allowed.wait()
        finished.set()

    async with connect(slow_teardown) as ws:
        await ws.close(wait=False)
        assert not finished.is_set()
        allowed.set()
    assert finished.is_set()  # leaving the block waited for it


async def test_cancel_app_is_a_forced_shutdown_the_client_sees_as_a_drop(app: Starlette) -> None:
    async with connect(app, "/ws/recorder") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "HI"
        await ws.cancel_app()
        # Starlette's endpoint runs on_disconnect only when it reads a disconnect
        assert app.state.events == ["connect", "receive hi"]
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert (closed.value.code, ws.close_code) == (1006, None)


async def test_cancel_app_during_the_handshake() -> None:
    cleaned_up: list[bool] = []
    deciding = anyio.Event()

    async def stuck(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        try:
            deciding.set()
            await anyio.sleep_forever()
        finally:
            cleaned_up.append(True)

    async with connect(stuck, wait_for_handshake=False) as ws:
        await deciding.wait()
        await ws.cancel_app()
        with pytest.raises(ServerClosed, match="1006 while the test was waiting for the handshake"):
            await ws.handshake()
    assert cleaned_up == [True]


# --------------------------------------------------------------------------- timeouts


async def test_a_receive_that_gets_nothing_fails_fast_and_says_what_it_awaited() -> None:
    async with connect(echo_app, timeout=0.2) as ws:
        started = anyio.current_time()
        with pytest.raises(ReceiveTimeout, match=r"after 0\.2s waiting for a text message"):
            await ws.receive_text()
        assert anyio.current_time() - started < 1.5
        with pytest.raises(AssertionError, match="waiting for a JSON message"):
            await ws.receive_json(timeout=0.05)  # a per-call timeout


async def test_receive_nothing() -> None:
    async with connect(echo_app) as ws:
        await ws.receive_nothing(within=0.05)
        await ws.send_text("ping")
        with pytest.raises(AssertionError, match="the app sent a text message 'ping'"):
            await ws.receive_nothing(within=0.5)


async def test_receive_nothing_reports_a_close(app: Starlette) -> None:
    async with connect(app, "/ws/close") as ws:
        await ws.send_text("bye")
        with pytest.raises(ServerClosed, match=r"code 4001 .* expecting no message for 0\.5s"):
            await ws.receive_nothing(within=0.5)


async def test_an_app_that_ignores_the_disconnect_is_cancelled_and_reported() -> None:
    cancelled: list[bool] = []

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await anyio.sleep_forever()  # never reads, so never sees the disconnect
        finally:
            cancelled.append(True)

    with anyio.fail_after(3):
        with pytest.raises(AssertionError, match=r"did not return within 0\.2s"):
            async with connect(stubborn, timeout=0.2):
                pass
    assert cancelled == [True]


async def test_timeout_zero_takes_only_what_has_arrived() -> None:
    sent = anyio.Event()

    async def two_at_once(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.send", "text": "one"})
        await send({"type": "websocket.send", "text": "two"})
        sent.set()
        await receive()

    async with connect(two_at_once) as ws:
        with pytest.raises(ReceiveTimeout, match="nothing has arrived from the app yet"):
            await ws.receive_text(timeout=0)
        await ws.send_text("go")
        await sent.wait()
        assert await ws.receive_text(timeout=0) == "one"
        assert await ws.receive_text(timeout=0) == "two"
        with pytest.raises(ReceiveTimeout):
            await ws.receive_text(timeout=0)


# --------------------------------------------------------------------------- app errors


async def test_an_exception_in_the_app_is_re_raised_in_the_test() -> None:
    async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        async with connect(faulty) as ws:
            await ws.send_text("trigger")
            await ws.receive_text()  # the client sees close 1011; leaving re-raises


async def test_an_exception_before_accept_is_re_raised_on_entering() -> None:
    async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeyError("no route")

    with pytest.raises(KeyError, match="no route"):
        async with connect(faulty):
            pytest.fail("the handshake should have failed")


async def test_without_raising_app_exceptions_the_client_sees_what_a_server_sends() -> None:
    async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if scope["path"] == "/late":
            await send({"type": "websocket.accept"})
            message = await receive()
        raise ValueError(message)

    async with connect(faulty, "/late", raise_app_exceptions=False) as ws:
        await ws.send_text("trigger")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1011

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(faulty, "/early", raise_app_exceptions=False):
            pass
    assert refused.value.status == 500


async def test_a_disconnect_escaping_a_starlette_endpoint_is_not_an_error(
    app: Starlette,
) -> None:
    # close_on_bye lets WebSocketDisconnect escape when the client leaves, as many
    # endpoints do; servers only log it, so the test client does not re-raise it
    async with connect(app, "/ws/close") as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "x"


async def test_a_protocol_error_in_the_app_is_reported() -> None:
    async def sends_before_accepting(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.send", "text": "too early"})

    with pytest.raises(RuntimeError, match="before the handshake"):
        async with connect(sends_before_accepting):
            pass


async def test_a_protocol_breach_fails_the_test_even_if_the_app_caught_it() -> None:
    async def careless(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        with contextlib.suppress(RuntimeError):  # swallowed: a server would only log it
            await send({"type": "websocket.send", "text": "after the close"})

    with pytest.raises(RuntimeError, match=r"'websocket\.send' after the connection was closed"):
        async with connect(careless):
            pass
