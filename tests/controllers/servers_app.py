"""Apps that tests/controllers/test_servers.py serves with uvicorn in a subprocess.

`Probe` echoes what it receives and obeys commands: `!close CODE`, `!raise
CODE` (a WebSocketException) and `!crash` (any other exception); `?refuse=1`
makes it refuse the handshake, `?deny=STATUS` refuses it with an
`HTTPException` of that status (sent as such where the server supports
denial responses). `Journal` appends its lifecycle to the file
named by the `TETHER_SERVER_LOG` environment variable.
"""

import os
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import WebSocketRoute

import tether
from tether import Provide, Query, WebSocket, WebSocketController, WebSocketException


class Probe(WebSocketController):
    async def on_connect(
        self, websocket: WebSocket, refuse: bool = Query(False), deny: int = Query(0)
    ) -> None:
        if deny:
            raise HTTPException(deny, "not for you")
        if refuse:
            await websocket.close(1008)

    async def on_receive(self, websocket: WebSocket, data: Any) -> Any:
        if isinstance(data, str) and data.startswith("!"):
            command, _, argument = data[1:].partition(" ")
            if command == "close":
                await websocket.close(int(argument), "as you wish")
            elif command == "raise":
                raise WebSocketException(int(argument), "raised")
            elif command == "crash":
                raise RuntimeError("crashed on purpose")
            return None
        return data


def write(line: str) -> None:
    with open(os.environ["TETHER_SERVER_LOG"], "a") as log:
        log.write(line + "\n")


def pool():
    write("pool up")
    yield "pool"
    write("pool down")


async def session(db: str = Provide(pool, scope="app")):
    write("session up")
    yield db
    write("session down")


class Journal(WebSocketController):
    async def on_receive(self, data: str, s: str = Provide(session)) -> str:
        return f"{s}:{data}"

    async def on_disconnect(self, close_code: int) -> None:
        write(f"on_disconnect {close_code}")


app = Starlette(
    routes=[WebSocketRoute("/probe/{room}", Probe), WebSocketRoute("/journal", Journal)],
    lifespan=tether.lifespan,
)
