from dataclasses import dataclass
from typing import Literal

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Query, WebSocketController, on
from tether.asyncapi import asyncapi_routes, generate


@dataclass
class Say:
    type: Literal["say"]
    text: str


@dataclass
class Said:
    type: Literal["said"]
    who: str
    text: str


@dataclass
class Joined:
    type: Literal["joined"]
    who: str


class Chat(WebSocketController):
    """A chat room."""

    sends = [Joined]

    async def on_connect(self, room: str, name: str = Query("guest")):
        self.name = name

    @on("say")
    async def say(self, data: Say) -> Said:
        """Say something to the room."""
        return Said(type="said", who=self.name, text=data.text)


app = Starlette(routes=[WebSocketRoute("/ws/{room}", Chat)])
app.routes.extend(asyncapi_routes(app, title="Chat", version="1.0.0"))

document = generate(app, title="Chat", version="1.0.0")
