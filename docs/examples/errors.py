import logging

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Query, WebSocket, WebSocketController, WebSocketException

log = logging.getLogger("vault")
closed_with: list[int] = []


class Vault(WebSocketController):
    encoding = "text"

    async def on_connect(self, token: str | None = Query(None)):
        if token != "secret":
            raise WebSocketException(1008, "bad token")  # before accept: HTTP 403

    async def on_receive(self, data: str) -> str:
        if data == "quit":
            raise WebSocketException(4000, "bye")
        if data == "divide":
            return str(1 / 0)
        return data

    async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
        log.warning("vault failed: %r", exc)
        await websocket.close(4500, type(exc).__name__)

    async def on_disconnect(self, close_code: int):
        closed_with.append(close_code)


app = Starlette(routes=[WebSocketRoute("/vault", Vault)])
