"""Starlette's pass-through `send` wrapper is skipped for websockets; other wrappers are not."""

from __future__ import annotations

from typing import Any

import pytest
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

from tether import WebSocket, WebSocketController
from tether.controllers._passthrough import skip_passthrough
from tether.internals import USE_PRIVATE_INTERNALS
from tether.testing import connect

pytestmark = pytest.mark.anyio

SCOPE = {"type": "websocket", "path": "/", "headers": [], "query_string": b""}


async def server_send(message: dict[str, Any]) -> None:
    """Stands for the server's `send`."""


async def sender_given_to(wrapper_depth: int) -> Any:
    """The `send` an app gets under `wrapper_depth` of Starlette's exception wrappers."""
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(send)

    wrapped = app
    for _ in range(wrapper_depth):
        wrapped = wrap_app_handling_exceptions(wrapped, StarletteWebSocket(SCOPE, None, None))
    await wrapped(SCOPE, None, server_send)
    return seen[0]


@pytest.mark.parametrize("depth", [1, 2])
async def test_starlettes_exception_wrappers_lead_back_to_the_servers_send(depth: int) -> None:
    sender = await sender_given_to(depth)
    assert sender is not server_send
    # With TETHER_NO_PRIVATE=1 Starlette's closure is not looked into: the wrapper stays.
    assert skip_passthrough(sender) is (server_send if USE_PRIVATE_INTERNALS else sender)


async def test_any_other_send_is_kept() -> None:
    async def logging_send(message: dict[str, Any]) -> None:
        await server_send(message)

    assert skip_passthrough(server_send) is server_send
    assert skip_passthrough(logging_send) is logging_send


class Echo(WebSocketController):
    encoding = "text"

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("welcome")

    async def on_receive(self, data: str) -> str:
        return data.upper()


class RecordSends:
    """A user's middleware that sees every message the app sends."""

    def __init__(self, app: Any, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            self.seen.append(message.get("text") or message["type"])
            await send(message)

        await self.app(scope, receive, recording_send)


async def test_a_users_middleware_still_sees_every_frame_in_a_mounted_sub_app() -> None:
    seen: list[str] = []
    inner = Starlette(routes=[WebSocketRoute("/echo", Echo)])
    app = Starlette(
        routes=[Mount("/chat", app=inner)],
        middleware=[Middleware(RecordSends, seen=seen)],
    )
    async with connect(app, "/chat/echo") as ws:
        assert await ws.receive_text() == "welcome"
        await ws.send_text("hi")
        assert await ws.receive_text() == "HI"
        await ws.close(1000)
    assert seen[:3] == ["websocket.accept", "welcome", "HI"]
