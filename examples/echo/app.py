"""The echo controller and its Starlette app."""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from examples.favicon import favicon_route
from tether import WebSocketController


class Echo(WebSocketController):
    """Sends every text message back, prefixed with `echo: `."""

    encoding = "text"

    async def on_receive(self, data: str) -> str:
        return f"echo: {data}"


app = Starlette(routes=[WebSocketRoute("/ws", Echo), favicon_route()])
