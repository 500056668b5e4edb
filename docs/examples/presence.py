from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Query, WebSocketController
from tether.brokers import MemoryBroker


class Room(WebSocketController):
    broker = MemoryBroker()  # RedisBroker(url): presence across every process

    async def on_connect(self, room: str, name: str = Query(), device: str = "web"):
        self.group = f"room:{room}"
        await self.join(
            self.group,
            presence={"device": device},  # small JSON: at most 1,024 bytes
            presence_key=name,  # one user may be here from several connections
            presence_events=True,  # send me presence_diff frames as others come and go
        )
        await self.websocket.accept()
        # Who was already here: a snapshot once; diffs keep it current.
        await self.websocket.send_json({"type": "present", "who": await self.presence(self.group)})

    async def on_receive(self, data: str) -> dict:
        return {"type": "count", "users": await self.presence_count(self.group)}


app = Starlette(routes=[WebSocketRoute("/ws/{room}", Room)])
