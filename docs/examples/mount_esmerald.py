from esmerald import ChildEsmerald, Esmerald, Include
from lilya.routing import WebSocketPath

import tether
from tether import WebSocketController


class Echo(WebSocketController):
    async def on_receive(self, data: str, room: str) -> str:
        return f"{room}: {data}"


app = Esmerald(
    routes=[
        WebSocketPath("/ws/{room}", Echo),
        # or grouped under a prefix, in a child app:
        Include("/chat", app=ChildEsmerald(routes=[WebSocketPath("/ws/{room}", Echo)])),
    ],
    lifespan=tether.lifespan,
)
