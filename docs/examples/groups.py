from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from tether import Query, WebSocketController, on
from tether.brokers import MemoryBroker


class Room(WebSocketController):
    broker = MemoryBroker()  # RedisBroker(url) would span processes
    outbound_maxsize = 256  # group messages one client may have waiting
    outbound_policy = "close"  # a client that falls further behind is closed with 1013

    async def on_connect(self, room: str, name: str = Query()):
        self.name, self.group = name, f"room:{room}"
        await self.join(self.group)  # returns once subscribed: nothing later is missed
        await self.publish(self.group, {"type": "joined", "name": name}, exclude_self=True)

    @on("say")
    async def say(self, data: dict) -> None:
        message = {"type": "said", "name": self.name, "text": data["text"]}
        await self.publish(self.group, message)  # the sender gets it too

    @on("mute")
    async def mute(self) -> dict:
        await self.leave(self.group)  # no more room messages for this connection
        return {"type": "muted"}

    async def on_disconnect(self):
        # Still a member here; tether leaves every group right after this hook.
        await self.publish(self.group, {"type": "left", "name": self.name}, exclude_self=True)


async def announce(request: Request) -> PlainTextResponse:
    """POST /rooms/{room}/announce: publish from outside any controller."""
    text = (await request.body()).decode()
    group = f"room:{request.path_params['room']}"
    await Room.broker.publish(group, {"type": "announcement", "text": text})
    return PlainTextResponse("sent")


app = Starlette(
    routes=[
        WebSocketRoute("/ws/{room}", Room),
        Route("/rooms/{room}/announce", announce, methods=["POST"]),
    ]
)
