"""Lilya: `WebSocketController` classes, and a `WebSocketPath` handler with DI for the graph.

Lilya resolves dependencies only for function handlers (`Provide` in the path's
`dependencies`, `Provides()` in the signature); its controllers take none, so the
graph route uses a function handler and reads path, query and header by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lilya.apps import Lilya
from lilya.controllers import WebSocketController
from lilya.dependencies import Provide, Provides
from lilya.routing import WebSocketPath
from lilya.websockets import WebSocket, WebSocketDisconnect

from benchmarks.workloads import (
    SETTINGS,
    Account,
    ChatMessage,
    DbConnection,
    Settings,
    check_graph,
)


class TextEcho(WebSocketController):
    """Echo text frames."""

    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: str) -> None:
        """Send the text back."""
        await websocket.send_text(data)


class JsonEcho(WebSocketController):
    """Echo JSON messages."""

    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        """Send the object back as JSON."""
        await websocket.send_json(data)


class TypedEcho(WebSocketController):
    """Decode JSON, build the dataclass, reply with two of its fields."""

    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        """Reply with the user and the counter."""
        message = ChatMessage(**data)
        await websocket.send_json({"user": message.user, "n": message.n})


class Bare(WebSocketController):
    """Accept with nothing to resolve (the controller's default `on_connect`)."""


async def get_settings() -> Settings:
    """Provide the settings."""
    return SETTINGS


async def get_account(settings: Settings) -> Account:
    """Provide an account built from the settings (`settings` comes from the same map)."""
    return Account(settings)


async def get_db() -> AsyncIterator[DbConnection]:
    """Provide a database connection; Lilya registers its close as a cleanup."""
    connection = DbConnection()
    try:
        yield connection
    finally:
        connection.close()


async def graph(
    websocket: WebSocket,
    settings: Settings = Provides(),
    account: Account = Provides(),
    db: DbConnection = Provides(),
) -> None:
    """Check what was resolved, accept, and wait for the client to leave."""
    room = websocket.path_params["room"]
    token = websocket.query_params["token"]
    agent = websocket.headers["user-agent"]
    check_graph(room, token, agent, account, db)
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass


app = Lilya(
    routes=[
        WebSocketPath("/echo", TextEcho),
        WebSocketPath("/json", JsonEcho),
        WebSocketPath("/typed", TypedEcho),
        WebSocketPath(
            "/graph/{room}",
            graph,
            dependencies={
                "settings": Provide(get_settings),
                "account": Provide(get_account),
                "db": Provide(get_db),
            },
        ),
        WebSocketPath("/bare/{room}", Bare),
    ]
)
