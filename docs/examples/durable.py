from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Query, WebSocket, WebSocketController
from tether.brokers import GroupHistory, MemoryBroker


class Room(WebSocketController):
    encoding = "json"
    # Rooms keep their last 500 messages, for 5 minutes after the last one.
    broker = MemoryBroker(history={"room:*": GroupHistory(size=500, ttl=300)})

    async def on_connect(
        self, websocket: WebSocket, room: str, since: str | None = Query(None)
    ) -> None:
        await websocket.accept()
        # `since` is the client's last position ("<epoch>:<offset>"), if it has one.
        result = await self.join(f"room:{room}", since=since)
        await websocket.send_json(
            {
                "type": "welcome",
                # False: a first visit, or the gap could not be filled; the
                # client should load the room afresh.
                "recovered": result.recovered,
                "reason": result.reason,
                "position": str(result.position),
            }
        )

    async def on_receive(self, data: dict, room: str) -> None:
        await self.publish(f"room:{room}", data)  # members get it with its position


app = Starlette(routes=[WebSocketRoute("/ws/{room}", Room)])
