"""Apps the `tether.testing` tests drive: bare ASGI, Starlette endpoints, a lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect


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
