"""The controller that the host apps (`hosts_app`, `esmerald_app`) serve under uvicorn.

`Room` appends its lifecycle to the file named by `TETHER_HOSTS_LOG`, where
the tests read it once the server has exited.
"""

import os

from tether import Provide, Query, WebSocketController


def write(line: str) -> None:
    """Append `line` to the log file the test named."""
    with open(os.environ["TETHER_HOSTS_LOG"], "a") as log:
        log.write(line + "\n")


def pool():
    """An app-scoped dependency that logs when it is set up and torn down."""
    write("pool up")
    yield "pool"
    write("pool down")


class Room(WebSocketController):
    """Echoes each message with its room and the pool; logs each step of its lifecycle."""

    encoding = "json"

    async def on_connect(self, room: str, name: str = Query("anon")) -> None:
        write(f"{name} joined {room}")

    async def on_receive(self, data: dict, room: str, db: str = Provide(pool, scope="app")) -> dict:
        return {"room": room, "db": db, "echo": data}

    async def on_disconnect(self, close_code: int) -> None:
        write(f"on_disconnect {close_code}")
