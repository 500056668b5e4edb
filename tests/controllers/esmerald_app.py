"""One controller mounted in Esmerald, for tests/controllers/test_esmerald.py.

Served by uvicorn in a subprocess as `esmerald_app:app`: the controller on a
route of its own (`/ws/{room}`) and inside an `Include` of a `ChildEsmerald`
(`/nested/{room}`), beside an ordinary Esmerald HTTP handler (`/health`), with
`tether.lifespan` as the app's lifespan. `Room` appends its lifecycle to the
file named by `TETHER_HOSTS_LOG`.
"""

import os

from esmerald import ChildEsmerald, Esmerald, Gateway, Include, get
from lilya.routing import WebSocketPath

import tether
from tether import Provide, Query, WebSocketController


def write(line: str) -> None:
    with open(os.environ["TETHER_HOSTS_LOG"], "a") as log:
        log.write(line + "\n")


def pool():
    write("pool up")
    yield "pool"
    write("pool down")


class Room(WebSocketController):
    encoding = "json"

    # `name` has no default: a client that leaves it out is refused with 403.
    async def on_connect(self, room: str, name: str = Query()) -> None:
        write(f"{name} joined {room}")

    async def on_receive(self, data: dict, room: str, db: str = Provide(pool, scope="app")) -> dict:
        return {"room": room, "db": db, "echo": data}

    async def on_disconnect(self, close_code: int) -> None:
        write(f"on_disconnect {close_code}")


@get("/health")
async def health() -> dict:
    return {"ok": True}


app = Esmerald(
    routes=[
        Gateway(handler=health),
        WebSocketPath("/ws/{room}", Room),
        Include("/nested", app=ChildEsmerald(routes=[WebSocketPath("/{room}", Room)])),
    ],
    lifespan=tether.lifespan,
)
