"""Starlette: `WebSocketEndpoint` subclasses mounted with `WebSocketRoute`."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from benchmarks.workloads import (
    ChatMessage,
    check_graph,
    db_connection,
    load_settings,
    open_account,
)


class TextEcho(WebSocketEndpoint):
    """Echo text frames."""

    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: str) -> None:
        """Send the text back."""
        await websocket.send_text(data)


class JsonEcho(WebSocketEndpoint):
    """Echo JSON messages."""

    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        """Send the object back as JSON."""
        await websocket.send_json(data)


class TypedEcho(WebSocketEndpoint):
    """Decode JSON, build the dataclass, reply with two of its fields."""

    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        """Reply with the user and the counter."""
        message = ChatMessage(**data)
        await websocket.send_json({"user": message.user, "n": message.n})


class Graph(WebSocketEndpoint):
    """Resolve the path param, query param, header and three dependencies by hand."""

    encoding = "text"

    async def on_connect(self, websocket: WebSocket) -> None:
        """Resolve everything, then accept."""
        room = websocket.path_params["room"]
        token = websocket.query_params["token"]
        agent = websocket.headers["user-agent"]
        settings = await load_settings()
        account = await open_account(settings)
        self.db_gen = db_connection()
        db = await anext(self.db_gen)
        check_graph(room, token, agent, account, db)
        await websocket.accept()

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        """Tear the generator dependency down."""
        await self.db_gen.aclose()


class Bare(WebSocketEndpoint):
    """Accept with nothing to resolve (the endpoint's default `on_connect`)."""


app = Starlette(
    routes=[
        WebSocketRoute("/echo", TextEcho),
        WebSocketRoute("/json", JsonEcho),
        WebSocketRoute("/typed", TypedEcho),
        WebSocketRoute("/graph/{room}", Graph),
        WebSocketRoute("/bare/{room}", Bare),
    ]
)
