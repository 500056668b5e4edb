"""The in-process test client: every test drives a real app and asserts what a client sees.

Each test runs under asyncio and under trio (see `conftest.py`). Every wait is
bounded: the client's own timeouts, plus `anyio.fail_after` where a test
measures one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import sniffio
from fastapi import FastAPI, Query
from fastapi import WebSocket as FastAPIWebSocket
from lilya.apps import Lilya
from lilya.routing import WebSocketPath
from lilya.websockets import WebSocket as LilyaWebSocket
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from tether.testing import (
    AppClient,
    ClientDisconnected,
    HandshakeRejected,
    LifespanFailed,
    ReceiveTimeout,
    ServerClosed,
    connect,
    lifespan,
)

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- apps


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app: accept, then send every frame back until the client leaves."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send(
            {"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")}
        )


async def inspect_connection(websocket: WebSocket) -> None:
    """Report what the app can see of the handshake, then close with the client's code."""
    await websocket.accept()
    await websocket.send_json(
        {
            "room": websocket.path_params["room"],
            "x": websocket.query_params.get("x"),
            "agent": websocket.headers.get("x-agent"),
            "sid": websocket.cookies.get("sid"),
            "host": websocket.headers["host"],
            "client": list(websocket.client or ()),
            "url": str(websocket.url),
        }
    )
    with contextlib.suppress(WebSocketDisconnect):
        await websocket.receive_text()


async def negotiate(websocket: WebSocket) -> None:
    """Accept the server's most preferred subprotocol that the client offers."""
    offered = websocket.scope["subprotocols"]
    chosen = next((p for p in ("v2.chat", "v1.chat") if p in offered), None)
    await websocket.accept(subprotocol=chosen, headers=[(b"x-server", b"tether")])
    await websocket.send_text(f"speaking {chosen}")
    with contextlib.suppress(WebSocketDisconnect):
        await websocket.receive_text()


async def close_on_bye(websocket: WebSocket) -> None:
    """Echo until the client says bye, then close with 4001."""
    await websocket.accept()
    while (text := await websocket.receive_text()) != "bye":
        await websocket.send_text(text)
    await websocket.close(code=4001, reason="see you")


async def require_token(websocket: WebSocket) -> None:
    """Refuse the handshake without `?token=`: by closing, or with a denial response."""
    if "token" not in websocket.query_params:
        if websocket.query_params.get("deny") == "response":
            response = PlainTextResponse(
                "token required", status_code=401, headers={"www-authenticate": "Bearer"}
            )
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1008, reason="token required")
        return
    await websocket.accept()
    await websocket.send_text("welcome")
    with contextlib.suppress(WebSocketDisconnect):
        await websocket.receive_text()


async def ticker(websocket: WebSocket) -> None:
    """Send ticks, never reading: it learns that the client left when a send fails."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("tick")
            await anyio.sleep(0.01)
    except WebSocketDisconnect as exc:
        websocket.app.state.events.append(f"ticker stopped {exc.code}")


class Recorder(WebSocketEndpoint):
    """A Starlette endpoint that records its lifecycle in `app.state.events`."""

    encoding = "text"

    async def on_connect(self, websocket: WebSocket) -> None:
        self.events = websocket.app.state.events
        await websocket.accept()
        self.events.append("connect")

    async def on_receive(self, websocket: WebSocket, data: str) -> None:
        self.events.append(f"receive {data}")
        await websocket.send_text(data.upper())

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        await anyio.sleep(0.05)  # slow teardown: the client must wait for it, not cancel it
        self.events.append(f"disconnect {close_code}")


def make_starlette_app() -> Starlette:
    app = Starlette(
        routes=[
            WebSocketRoute("/ws/inspect/{room}", inspect_connection),
            WebSocketRoute("/ws/negotiate", negotiate),
            WebSocketRoute("/ws/close", close_on_bye),
            WebSocketRoute("/ws/private", require_token),
            WebSocketRoute("/ws/ticker", ticker),
            WebSocketRoute("/ws/recorder", Recorder),
        ]
    )
    app.state.events = []
    return app


@pytest.fixture
def app() -> Starlette:
    """The app the `ws_connect` and `app_client` fixtures connect to."""
    return make_starlette_app()


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


async def test_path_query_headers_cookies_and_client_reach_the_app(app: Starlette) -> None:
    async with connect(
        app,
        "/ws/inspect/lobby?x=1",
        headers={"X-Agent": "pytest"},
        cookies={"sid": "abc"},
    ) as ws:
        seen = await ws.receive_json()
    assert seen["room"] == "lobby"
    assert seen["x"] == "1"
    assert seen["agent"] == "pytest"
    assert seen["sid"] == "abc"
    assert seen["host"] == "testserver"
    assert seen["client"][0] == "127.0.0.1"
    assert seen["url"] == "ws://testserver/ws/inspect/lobby?x=1"


async def test_a_full_url_sets_scheme_host_and_port(app: Starlette) -> None:
    async with connect(app, "wss://chat.example.org:8443/ws/inspect/a%20b") as ws:
        seen = await ws.receive_json()
        assert ws.scope["server"] == ("chat.example.org", 8443)
        assert ws.scope["raw_path"] == b"/ws/inspect/a%20b"
    assert seen["room"] == "a b"
    assert seen["host"] == "chat.example.org:8443"
    assert seen["url"].startswith("wss://chat.example.org:8443/ws/inspect/")


async def test_the_scope_is_what_a_server_would_send() -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await send({"type": "websocket.close"})

    with pytest.raises(HandshakeRejected):
        async with connect(
            app,
            "/ws/caf%C3%A9?q=1&q=2",
            headers=[("X-Trace", "1"), (b"x-trace", b"2")],
            subprotocols=["a", "b"],
            state={"db": "fake"},
        ):
            pass
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["server"] == ("testserver", 80)
    assert scope["client"][0] == "127.0.0.1"
    assert isinstance(scope["client"][1], int)
    assert scope["root_path"] == ""
    assert scope["path"] == "/ws/café"
    assert scope["raw_path"] == b"/ws/caf%C3%A9"
    assert scope["query_string"] == b"q=1&q=2"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["state"] == {"db": "fake"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    headers = scope["headers"]
    assert all(name == name.lower() and isinstance(value, bytes) for name, value in headers)
    assert (b"host", b"testserver") in headers
    assert (b"upgrade", b"websocket") in headers
    assert (b"sec-websocket-version", b"13") in headers
    assert (b"sec-websocket-protocol", b"a, b") in headers
    assert [value for name, value in headers if name == b"x-trace"] == [b"1", b"2"]


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


# --------------------------------------------------------------------------- lifespan


def make_app_with_lifespan(events: list[str], *, fail: bool = False) -> Starlette:
    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        if fail:
            raise RuntimeError("database unreachable")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")

    async def greet(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.state.greeting)

    return Starlette(routes=[WebSocketRoute("/ws", greet)], lifespan=app_lifespan)


async def test_lifespan_runs_startup_and_shutdown_and_shares_its_state() -> None:
    events: list[str] = []
    app = make_app_with_lifespan(events)
    async with lifespan(app) as state:
        assert events == ["startup"]
        assert state == {"greeting": "hello from lifespan"}
        async with connect(app, "/ws", state=state) as ws:
            assert await ws.receive_text() == "hello from lifespan"
    assert events == ["startup", "shutdown"]


async def test_app_client_runs_the_lifespan_around_its_connections() -> None:
    events: list[str] = []
    app = make_app_with_lifespan(events)
    async with AppClient(app) as client:
        assert client.state["greeting"] == "hello from lifespan"
        async with client.connect("/ws") as ws:
            assert await ws.receive_text() == "hello from lifespan"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_a_failing_startup_raises_lifespan_failed() -> None:
    app = make_app_with_lifespan([], fail=True)
    with pytest.raises(LifespanFailed, match="database unreachable") as failed:
        async with lifespan(app):
            pytest.fail("startup failed, the block must not run")
    assert failed.value.phase == "startup"
    assert isinstance(failed.value.__cause__, RuntimeError)


async def test_a_failing_shutdown_raises_lifespan_failed() -> None:
    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        raise RuntimeError("could not flush")

    app = Starlette(lifespan=app_lifespan)
    with pytest.raises(LifespanFailed, match="could not flush") as failed:
        async with lifespan(app):
            pass
    assert failed.value.phase == "shutdown"


async def test_a_startup_that_never_answers_times_out() -> None:
    async def stuck(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await anyio.sleep_forever()

    with anyio.fail_after(3):
        with pytest.raises(LifespanFailed, match=r"did not answer 'lifespan.startup' within 0\.2s"):
            async with lifespan(stuck, timeout=0.2):
                pass


async def test_an_app_without_lifespan_support() -> None:
    # AppClient's default lifespan="auto" goes on without one, as uvicorn does
    async with AppClient(echo_app) as client:
        assert client.state == {}
        async with client.connect("/") as ws:
            await ws.send_text("still works")
            assert await ws.receive_text() == "still works"
    # asking for it explicitly surfaces the app's own error
    with pytest.raises(AssertionError):
        async with lifespan(echo_app):
            pass


async def test_app_client_must_be_entered_before_connecting() -> None:
    client = AppClient(make_app_with_lifespan([]))
    with pytest.raises(RuntimeError, match="async with AppClient"):
        client.connect("/ws")


# --------------------------------------------------------------------------- other frameworks


async def test_a_fastapi_app() -> None:
    api = FastAPI()

    @api.websocket("/items/{item_id}")
    async def item(websocket: FastAPIWebSocket, item_id: int, q: str = Query("none")) -> None:
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "q": q})
        await websocket.close()

    async with AppClient(api) as client, client.connect("/items/7?q=x") as ws:
        assert await ws.receive_json() == {"item_id": 7, "q": "x"}
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1000


async def test_a_lilya_app() -> None:
    async def echo(websocket: LilyaWebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"{text} in {websocket.path_params['room']}")
        await websocket.close(code=4000)

    lilya_app = Lilya(routes=[WebSocketPath("/ws/{room}", echo)])
    async with AppClient(lilya_app) as client, client.connect("/ws/r1") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi in r1"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 4000


# --------------------------------------------------------------------------- the pytest plugin


async def test_the_ws_connect_fixture(ws_connect: Any, app: Starlette) -> None:
    async with ws_connect("/ws/recorder") as ws:
        await ws.send_text("fixture")
        assert await ws.receive_text() == "FIXTURE"
    assert app.state.events[-1] == "disconnect 1000"


async def test_the_app_client_fixture(app_client: AppClient) -> None:
    async with app_client.connect("/ws/close") as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "x"


def test_the_redis_server_fixture(redis_server: Any) -> None:
    redis = pytest.importorskip("redis")
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    connection = redis.Redis.from_url(redis_server.url)
    try:
        assert connection.ping() is True
    finally:
        connection.close()
