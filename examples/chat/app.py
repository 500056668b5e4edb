"""Chat rooms over WebSockets, with a browser page, on one process or many.

- `GET /` serves the page (`page.html`: plain HTML and a script, no build step).
- `/ws/{room}?nick=NAME` is the WebSocket: everyone in a room sees what the
  others say, and who joins and leaves; `{"type": "who"}` answers who is in
  the room (its presence, on every process), which the page asks on joining.
- `GET /asyncapi` describes the WebSocket API (and `/asyncapi.json`).

Groups go through an in-process `MemoryBroker`; give `create_app` a Redis URL
(or set `TETHER_REDIS_URL`) and they go through Redis, so that several
processes serve one chat. With `history=True` (or `TETHER_CHAT_HISTORY=1`)
rooms keep their last messages: a page that lost its connection comes back
with `?since=<its last position>` and gets what it missed.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

import tether
from examples.favicon import favicon_route
from tether import Provide, Query, WebSocketController, WebSocketException, on
from tether.asyncapi import asyncapi_routes
from tether.brokers import Broker, GroupHistory, MemoryBroker
from tether.client import client_route

# -- the messages ----------------------------------------------------------------------

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Say(msgspec.Struct):
    """Client to server, `{"type": "say", "text": "..."}`: a line for the room."""

    text: Text


class Said(msgspec.Struct, tag_field="type", tag="said"):
    """Server to client: `nick` said `text` in this room."""

    nick: str
    text: str


class Joined(msgspec.Struct, tag_field="type", tag="joined"):
    """Server to client: `nick` entered the room (also sent to `nick`)."""

    nick: str
    room: str


class Left(msgspec.Struct, tag_field="type", tag="left"):
    """Server to client: `nick` left the room."""

    nick: str


class IsTyping(msgspec.Struct, tag_field="type", tag="typing"):
    """Server to client: `nick` is typing."""

    nick: str


class Present(msgspec.Struct, tag_field="type", tag="present"):
    """Server to client, the answer to `who`: the nicknames in the room, sorted."""

    nicks: list[str]


class CaughtUp(msgspec.Struct, tag_field="type", tag="recovery"):
    """Server to client, first, in rooms with history: did the client get all it missed?

    `recovered` is False on a first visit or when the gap was too old: the
    page starts the room afresh. `position` is the room's position to
    resume from if no message arrives before the next reconnect.
    """

    recovered: bool
    missed: int
    position: str


# -- the controller --------------------------------------------------------------------

NAME = re.compile(r"[A-Za-z0-9_-]{1,20}")


def checked_name(what: str, value: str) -> str:
    """Return `value` if it is 1-20 letters, digits, `_` or `-`; else refuse the connection."""
    if not NAME.fullmatch(value):
        raise WebSocketException(1008, f"{what} must be 1-20 letters, digits, _ or -")
    return value


def nickname(nick: str = Query()) -> str:
    """The `nick` query parameter, required and checked (a bad one is answered with 403)."""
    return checked_name("nick", nick)


def room_name(room: str) -> str:
    """The `{room}` path parameter, checked like a nickname."""
    return checked_name("room", room)


class ChatRoom(WebSocketController):
    """A chat room: what one member says reaches every member of the room."""

    sends = [CaughtUp, Present]  # sent by the controller itself, not to the room
    # What is published to the rooms: as published, or (with history) in the envelope
    # with its position, as the broker's history= decides.
    groups = {"room:*": Said | Joined | Left | IsTyping}

    async def on_connect(
        self,
        nick: str = Provide(nickname),
        room: str = Provide(room_name),
        since: str | None = Query(None),
    ) -> None:
        self.nick, self.group = nick, f"room:{room}"
        # Returns once subscribed: nothing after it is missed. In a room with
        # history, what came after `since` (the page's last position) comes first.
        # Present under its nickname: `who` answers from the room's presence, on
        # every process, and a connection leaves it however it ends.
        result = await self.join(self.group, since=since, presence={}, presence_key=nick)
        if result.position is not None:
            await self.websocket.accept()
            caught = CaughtUp(result.recovered, result.replayed, str(result.position))
            await self.websocket.send_text(msgspec.json.encode(caught).decode())
        await self.publish(self.group, Joined(nick=nick, room=room))

    @on("say")
    async def say(self, data: Say) -> None:
        """Say something to everyone in the room (yourself included)."""
        await self.publish(self.group, Said(nick=self.nick, text=data.text))

    @on("who")
    async def who(self) -> Present:
        """Ask who is in the room (yourself included)."""
        return Present(nicks=sorted(await self.presence(self.group)))

    @on("typing")
    async def typing(self) -> None:
        """Tell the others in the room that you are typing."""
        await self.publish(self.group, IsTyping(nick=self.nick), exclude_self=True)

    async def on_disconnect(self) -> None:
        await self.publish(self.group, Left(nick=self.nick), exclude_self=True)


# -- the app ---------------------------------------------------------------------------

PAGE = (Path(__file__).parent / "page.html").read_bytes()


async def chat_page(request: Request) -> HTMLResponse:
    """The chat page: pick a nickname and a room, then talk."""
    return HTMLResponse(PAGE)


ROOM_HISTORY = {"room:*": GroupHistory(size=1000, ttl=600)}  # per room: 1,000 lines, 10 min


def make_broker(redis_url: str | None, *, history: bool = False) -> Broker:
    """A `RedisBroker` when given a URL (groups span processes), else an in-process one.

    With `history`, rooms keep their last messages so that clients can recover.
    """
    kept = ROOM_HISTORY if history else None
    if redis_url:
        from tether.brokers import RedisBroker  # needs the redis extra

        return RedisBroker(redis_url, history=kept)
    return MemoryBroker(history=kept)


def page_origins(host: str, port: int) -> list[str]:
    """The origins the chat page is served from, so the only ones allowed to connect."""
    hosts = ["127.0.0.1", "localhost"]
    if host not in (*hosts, "0.0.0.0", "::"):
        hosts.append(host)
    return [f"http://{name}:{port}" for name in hosts]


def asyncapi_options(host: str = "127.0.0.1", port: int = 8000) -> dict[str, Any]:
    """What `generate()` and `asyncapi_routes()` are given for the chat's AsyncAPI document."""
    return {
        "title": "tether chat example",
        "version": "1.0.0",
        "description": "Chat rooms: join `/ws/{room}?nick=NAME`, send `say`, see the room.",
        "servers": {"local": {"host": f"{host}:{port}", "protocol": "ws"}},
    }


def create_app(
    port: int = 8000,
    *,
    redis_url: str | None = None,
    host: str = "127.0.0.1",
    history: bool = False,
) -> Starlette:
    """Build the chat app for a server listening on `host:port`.

    The port decides which origins may open the WebSocket: only the chat's
    own page (`http://127.0.0.1:PORT` or `http://localhost:PORT`) is allowed,
    so another site cannot connect in its visitors' name. `redis_url` switches
    groups to Redis, which several processes (`--workers`) need. `history`
    makes rooms keep their last messages, so a page that reconnects with its
    last position gets what it missed (see docs/protocol.md).
    """

    class Chat(ChatRoom):
        """Chat rooms at `/ws/{room}?nick=NAME`: what one member says reaches the room."""

        allowed_origins = page_origins(host, port)
        broker = make_broker(redis_url, history=history)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with tether.lifespan(app), Chat.broker:  # connect to Redis at startup
            yield

    app = Starlette(
        routes=[
            Route("/", chat_page),
            client_route(),  # the page's connection: tether.js
            WebSocketRoute("/ws/{room}", Chat),
            favicon_route(),
        ],
        lifespan=lifespan,
    )
    app.routes.extend(asyncapi_routes(app, **asyncapi_options(host, port)))
    return app


def app_from_env() -> Starlette:
    """`create_app()` configured by `TETHER_CHAT_HOST`, `TETHER_CHAT_PORT`,
    `TETHER_REDIS_URL` and `TETHER_CHAT_HISTORY` (`1`: rooms keep history)."""
    return create_app(
        int(os.environ.get("TETHER_CHAT_PORT", "8000")),
        redis_url=os.environ.get("TETHER_REDIS_URL") or None,
        host=os.environ.get("TETHER_CHAT_HOST", "127.0.0.1"),
        history=os.environ.get("TETHER_CHAT_HISTORY") == "1",
    )


# For `uvicorn examples.chat.app:app` and for worker processes, which import the app by name.
app = app_from_env()
