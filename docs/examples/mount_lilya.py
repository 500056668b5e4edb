from lilya.apps import Lilya
from lilya.routing import WebSocketPath

from tether import WebSocketController


class Echo(WebSocketController):
    async def on_receive(self, data: str, room: str) -> str:
        return f"{room}: {data}"


app = Lilya(routes=[WebSocketPath("/ws/{room}", Echo)])
