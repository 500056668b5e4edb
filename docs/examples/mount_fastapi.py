from fastapi import FastAPI
from starlette.routing import WebSocketRoute

from tether import WebSocketController


class Echo(WebSocketController):
    async def on_receive(self, data: str, room: str) -> str:
        return f"{room}: {data}"


app = FastAPI(routes=[WebSocketRoute("/ws/{room}", Echo)])
# or, on an existing app:
app.router.add_websocket_route("/ws2/{room}", Echo)
