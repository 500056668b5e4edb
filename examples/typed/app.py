"""Typed messages: a discriminated set of events, each routed by `@on` to a typed handler.

Every message a client sends is a JSON object whose `"type"` names the
event (`add`, `done`, `remove`, `list`); its handler gets it validated into
the matching msgspec Struct and returns a typed reply. The server also sends
`Welcome` and `Problem` itself, which the `sends` declaration lists, so the
AsyncAPI document served at `/asyncapi` describes every message both ways.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from examples.favicon import favicon_route
from tether import DecodeError, WebSocket, WebSocketController, on
from tether.asyncapi import asyncapi_routes

# -- what clients send: one tagged Struct per event ------------------------------------


class Event(msgspec.Struct, tag_field="type"):
    """A client's message; `type` says which one."""


class Add(Event, tag="add"):
    """Add an item to the list."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Done(Event, tag="done"):
    """Mark item `id` as done."""

    id: int


class Remove(Event, tag="remove"):
    """Remove item `id`."""

    id: int


class GetList(Event, tag="list"):
    """Ask for the whole list."""


# -- what the server sends -------------------------------------------------------------


class Item(msgspec.Struct):
    """One to-do item."""

    id: int
    text: str
    done: bool = False


class Reply(msgspec.Struct, tag_field="type"):
    """A server message; `type` says which one."""


class Welcome(Reply, tag="welcome"):
    """Sent once on connect: the events this server understands."""

    events: list[str]


class Added(Reply, tag="added"):
    """The item that `add` created."""

    item: Item


class Updated(Reply, tag="updated"):
    """The item after `done`."""

    item: Item


class Removed(Reply, tag="removed"):
    """The id that `remove` removed."""

    id: int


class Items(Reply, tag="items"):
    """The whole list, oldest first."""

    items: list[Item]


class Problem(Reply, tag="problem"):
    """A message could not be handled; `detail` says why. The connection stays open."""

    detail: str


# -- the controller --------------------------------------------------------------------


class Todo(WebSocketController):
    """A to-do list, private to each connection."""

    sends = [Welcome, Problem]

    async def on_connect(self, websocket: WebSocket) -> None:
        self.items: dict[int, Item] = {}
        self.next_id = 1
        await websocket.accept()
        await self.send_reply(Welcome(events=["add", "done", "remove", "list"]))

    @on("add")
    async def add(self, data: Add) -> Added:
        """Add an item; the reply carries its id."""
        item = self.items[self.next_id] = Item(id=self.next_id, text=data.text)
        self.next_id += 1
        return Added(item=item)

    @on("done")
    async def done(self, data: Done) -> Updated | Problem:
        """Mark an item as done."""
        item = self.items.get(data.id)
        if item is None:
            return Problem(detail=f"no item {data.id}")
        item.done = True
        return Updated(item=item)

    @on("remove")
    async def remove(self, data: Remove) -> Removed | Problem:
        """Remove an item."""
        if self.items.pop(data.id, None) is None:
            return Problem(detail=f"no item {data.id}")
        return Removed(id=data.id)

    @on("list")
    async def get_list(self, data: GetList) -> Items:
        """Send the whole list."""
        return Items(items=list(self.items.values()))

    async def on_decode_error(self, websocket: WebSocket, exc: DecodeError) -> None:
        """An invalid or unknown event: answer with a `Problem` instead of closing."""
        await self.send_reply(Problem(detail=exc.reason))

    async def send_reply(self, reply: Reply) -> None:
        """Send a server message as JSON text."""
        await self.websocket.send_text(msgspec.json.encode(reply).decode())


app = Starlette(routes=[WebSocketRoute("/ws", Todo), favicon_route()])
app.routes.extend(asyncapi_routes(app, title="tether typed example", version="1.0.0"))
