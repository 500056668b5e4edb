from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Query, WebSocketController


@dataclass
class Say:
    text: str


class Room(WebSocketController):
    async def on_connect(self, room: str, name: str = Query("guest")):
        self.who = f"{name}@{room}"  # returning without accept() accepts

    async def on_receive(self, data: Say) -> dict:
        return {"from": self.who, "text": data.text}


app = Starlette(routes=[WebSocketRoute("/ws/{room}", Room)])
