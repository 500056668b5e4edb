from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import WebSocketController, on


class Move(msgspec.Struct):
    x: int
    y: int


class Game(WebSocketController):
    event_key = "type"  # the default

    @on("move")
    async def move(self, data: Move) -> dict:
        return {"type": "moved", "to": [data.x, data.y]}

    @on("ping")
    @on("hello")
    async def greet(self, data: dict) -> dict:
        return {"type": "pong" if data["type"] == "ping" else "welcome"}

    async def on_receive(self, data: Any) -> dict:
        return {"type": "error", "detail": "no handler", "got": data}

    async def on_decode_error(self, websocket, exc) -> None:
        # Answer instead of closing; the connection stays open.
        await websocket.send_json({"type": "error", "detail": exc.reason})


class Strict(WebSocketController):
    """No on_receive: an unknown event closes with 1003."""

    @on("move")
    async def move(self, data: Move) -> str:
        return "ok"


app = Starlette(routes=[WebSocketRoute("/game", Game), WebSocketRoute("/strict", Strict)])
