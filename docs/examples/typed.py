from dataclasses import dataclass
from typing import TypedDict

import msgspec
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import WebSocketController


@dataclass
class Move:
    x: int
    y: int


class Join(TypedDict):
    room: str


class Post(BaseModel):
    text: str = Field(max_length=20)


class Point(msgspec.Struct):
    x: float
    y: float


class Moves(WebSocketController):
    async def on_receive(self, data: Move) -> dict:
        return {"to": [data.x, data.y]}


class Joins(WebSocketController):
    async def on_receive(self, data: Join) -> str:
        return f"joined {data['room']}"


class Posts(WebSocketController):
    async def on_receive(self, data: Post) -> Post:
        return Post(text=data.text.upper())


class Points(WebSocketController):
    async def on_receive(self, data: list[Point]) -> float:
        return sum(p.x + p.y for p in data)


app = Starlette(
    routes=[
        WebSocketRoute("/moves", Moves),
        WebSocketRoute("/joins", Joins),
        WebSocketRoute("/posts", Posts),
        WebSocketRoute("/points", Points),
    ]
)
