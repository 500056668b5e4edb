"""tether: `WebSocketController` subclasses mounted in Starlette with `WebSocketRoute`.

Mounted the same way as the Starlette endpoints, so both pay the same routing cost
and the comparison isolates the controller itself.
"""

from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from benchmarks.workloads import (
    SETTINGS,
    Account,
    ChatStruct,
    DbConnection,
    Settings,
    check_graph,
)
from tether import Header, Provide, Query, WebSocketController
from tether.brokers import MemoryBroker


async def get_settings() -> Settings:
    """Provide the settings."""
    return SETTINGS


async def get_account(settings: Settings = Provide(get_settings)) -> Account:
    """Provide an account built from the settings."""
    return Account(settings)


async def get_db() -> AsyncIterator[DbConnection]:
    """Provide a database connection, closed after `on_disconnect`."""
    connection = DbConnection()
    try:
        yield connection
    finally:
        connection.close()


class TextEcho(WebSocketController):
    """Echo text frames."""

    encoding = "text"

    async def on_receive(self, data: str) -> str:
        """Return the text; tether sends it."""
        return data


class JsonEcho(WebSocketController):
    """Echo JSON messages."""

    encoding = "json"

    async def on_receive(self, data: Any) -> Any:
        """Return the object; tether encodes it."""
        return data


class TypedEcho(WebSocketController):
    """Receive the message decoded into a msgspec Struct."""

    async def on_receive(self, data: ChatStruct) -> dict[str, Any]:
        """Reply with two of its fields."""
        return {"user": data.user, "n": data.n}


class Graph(WebSocketController):
    """Resolve the path param, query param, header and three dependencies before `on_connect`."""

    async def on_connect(
        self,
        room: str,
        token: str = Query(),
        agent: str = Header(alias="user-agent"),
        settings: Settings = Provide(get_settings),
        account: Account = Provide(get_account),
        db: DbConnection = Provide(get_db),
    ) -> None:
        """Check what was resolved; returning unaccepted auto-accepts."""
        check_graph(room, token, agent, account, db)


class Bare(WebSocketController):
    """Accept with nothing to resolve."""


class OneDependency(WebSocketController):
    """Accept after resolving one connection-scoped generator dependency (for footprint)."""

    async def on_connect(self, db: DbConnection = Provide(get_db)) -> None:
        """Keep the session for the connection's lifetime; returning accepts."""


# --- fan-out: group members on a broker of their own ------------------------------

fanout_broker = MemoryBroker()


class RoomMember(WebSocketController):
    """Joins the `room` group on connect; the group's messages go out through its queue."""

    broker = fanout_broker
    outbound_maxsize = 64

    async def on_connect(self) -> None:
        """Join before accepting, so nothing published after accept is missed."""
        await self.join("room")


fanout_app = RoomMember
"""The fan-out member served directly (a controller is an ASGI app)."""


async def fanout_publish(text: str) -> None:
    """Publish `text` to every `RoomMember` through their broker."""
    await fanout_broker.publish("room", text)


app = Starlette(
    routes=[
        WebSocketRoute("/echo", TextEcho),
        WebSocketRoute("/json", JsonEcho),
        WebSocketRoute("/typed", TypedEcho),
        WebSocketRoute("/graph/{room}", Graph),
        WebSocketRoute("/bare/{room}", Bare),
        WebSocketRoute("/scoped/{room}", OneDependency),
    ]
)
