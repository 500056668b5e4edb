import logging

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import WebSocket, WebSocketController

log = logging.getLogger("counter")


class Counter(WebSocketController):
    encoding = "json"

    async def on_connect(self, websocket: WebSocket, name: str):
        if name == "nobody":
            await websocket.close(1008)  # before accept: the server answers 403
            return
        await websocket.accept()
        self.name, self.count = name, 0  # one instance per connection
        await websocket.send_json({"hello": name})

    async def on_receive(self, data: dict) -> dict:
        self.count += 1
        return {"n": self.count, "echo": data}

    def on_disconnect(self, close_code: int):  # a plain def works too
        log.info("%s left (%d) after %d messages", self.name, close_code, self.count)


app = Starlette(routes=[WebSocketRoute("/count/{name}", Counter)])
