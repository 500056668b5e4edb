"""The scope the app gets: what a server would build from the URL, headers and options."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from tether.testing import HandshakeRejected, connect

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- the scope


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
