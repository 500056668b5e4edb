"""Litestar: `WebsocketListener` classes; typed data and `Provide` dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.di import Provide
from litestar.dto import MsgspecDTO
from litestar.handlers import WebsocketListener
from litestar.params import Parameter

from benchmarks.workloads import (
    SETTINGS,
    Account,
    ChatStruct,
    DbConnection,
    Settings,
    check_graph,
)


async def provide_settings() -> Settings:
    """Provide the settings."""
    return SETTINGS


async def provide_account(settings: Settings) -> Account:
    """Provide an account built from the settings."""
    return Account(settings)


async def provide_db() -> AsyncIterator[DbConnection]:
    """Provide a database connection, closed when the connection ends."""
    connection = DbConnection()
    try:
        yield connection
    finally:
        connection.close()


class TextEcho(WebsocketListener):
    """Echo text frames."""

    path = "/echo"

    async def on_receive(self, data: str) -> str:
        """Return the text; Litestar sends it."""
        return data


class JsonEcho(WebsocketListener):
    """Echo JSON messages."""

    path = "/json"

    async def on_receive(self, data: dict[str, Any]) -> dict[str, Any]:
        """Return the object; Litestar encodes it."""
        return data


class TypedEcho(WebsocketListener):
    """Receive the message decoded into a msgspec Struct by Litestar's DTO."""

    path = "/typed"
    dto = MsgspecDTO[ChatStruct]
    return_dto = None

    async def on_receive(self, data: ChatStruct) -> dict[str, Any]:
        """Reply with two of its fields."""
        return {"user": data.user, "n": data.n}


class Graph(WebsocketListener):
    """Resolve the path param, query param, header and three dependencies in `on_accept`."""

    path = "/graph/{room:str}"
    dependencies = {
        "settings": Provide(provide_settings),
        "account": Provide(provide_account),
        "db": Provide(provide_db),
    }

    async def on_accept(
        self,
        room: str,
        token: str,
        agent: Annotated[str, Parameter(header="user-agent")],
        settings: Settings,
        account: Account,
        db: DbConnection,
    ) -> None:
        """Check what was resolved."""
        check_graph(room, token, agent, account, db)

    async def on_receive(self, data: str) -> None:
        """Ignore messages; the client only connects."""


class Bare(WebsocketListener):
    """Accept with nothing to resolve."""

    path = "/bare/{room:str}"

    async def on_receive(self, data: str) -> None:
        """Ignore messages; the client only connects."""


app = Litestar(route_handlers=[TextEcho, JsonEcho, TypedEcho, Graph, Bare], debug=False)


# --- fan-out: the channels plugin's own websocket route, one member per connection ---


def _fanout_app() -> tuple[Litestar, ChannelsPlugin]:
    plugin = ChannelsPlugin(
        backend=MemoryChannelsBackend(),
        channels=["room"],
        create_ws_route_handlers=True,
        subscriber_max_backlog=64,
    )
    return Litestar(plugins=[plugin], debug=False), plugin


fanout_app, fanout_plugin = _fanout_app()
"""A Litestar app whose `ChannelsPlugin` serves `/room`; run its lifespan around use."""


async def fanout_publish(text: str) -> None:
    """Publish `text` to the `room` channel (the plugin queues it and returns at once)."""
    fanout_plugin.publish(text, "room")
