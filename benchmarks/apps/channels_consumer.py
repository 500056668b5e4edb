"""Django Channels: async consumers routed with `URLRouter`, no channel layer.

Django is configured here, in-process, with the smallest settings Channels needs.
Channels has no dependency injection, so the graph consumer does the work by hand.
The settings name one in-memory channel layer, under the alias `"fanout"`, for
the fan-out benchmark's group members only: the consumers below keep the default
alias, which has no layer, so they pay nothing for it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import django
from django.conf import settings as django_settings

if not django_settings.configured:
    django_settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        DATABASES={},
        CHANNEL_LAYERS={
            "fanout": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 1000},
            }
        },
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

from benchmarks.workloads import (
    ChatMessage,
    check_graph,
    db_connection,
    load_settings,
    open_account,
)


class TextEcho(AsyncWebsocketConsumer):
    """Echo text frames."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send the text back."""
        await self.send(text_data=text_data)


class JsonEcho(AsyncJsonWebsocketConsumer):
    """Echo JSON messages."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Send the object back as JSON."""
        await self.send_json(content)


class TypedEcho(AsyncJsonWebsocketConsumer):
    """Decode JSON, build the dataclass, reply with two of its fields."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Reply with the user and the counter."""
        message = ChatMessage(**content)
        await self.send_json({"user": message.user, "n": message.n})


class Graph(AsyncWebsocketConsumer):
    """Resolve the path param, query param, header and three dependencies by hand."""

    async def connect(self) -> None:
        """Resolve everything, then accept."""
        room = self.scope["url_route"]["kwargs"]["room"]
        query = dict(parse_qsl(self.scope["query_string"].decode("latin-1")))
        headers = dict(self.scope["headers"])
        agent = headers[b"user-agent"].decode("latin-1")
        settings = await load_settings()
        account = await open_account(settings)
        self.db_gen = db_connection()
        db = await anext(self.db_gen)
        check_graph(room, query["token"], agent, account, db)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Tear the generator dependency down."""
        await self.db_gen.aclose()


class Bare(AsyncWebsocketConsumer):
    """Accept with nothing to resolve (the consumer's default `connect`)."""


app = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("echo", TextEcho.as_asgi()),
                path("json", JsonEcho.as_asgi()),
                path("typed", TypedEcho.as_asgi()),
                path("graph/<str:room>", Graph.as_asgi()),
                path("bare/<str:room>", Bare.as_asgi()),
            ]
        )
    }
)


# --- fan-out: a group member, joined through the channel layer -------------------

FANOUT_LAYER = "fanout"


class RoomMember(AsyncWebsocketConsumer):
    """Joins the `room` group on connect (Channels' `groups`) and forwards its messages."""

    channel_layer_alias = FANOUT_LAYER
    groups = ["room"]

    async def room_message(self, event: dict[str, Any]) -> None:
        """Send a `room.message` event's text, encoded once by the publisher."""
        await self.send(text_data=event["text"])


fanout_app = RoomMember.as_asgi()
"""The fan-out member served directly; publish with `fanout_publish`."""


async def fanout_publish(text: str) -> None:
    """Publish `text` to every `RoomMember`: `group_send` on the in-memory channel layer."""
    from channels.layers import get_channel_layer

    await get_channel_layer(FANOUT_LAYER).group_send("room", {"type": "room.message", "text": text})
