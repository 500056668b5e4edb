"""One controller mounted in Esmerald, for tests/controllers/test_esmerald.py.

Served by uvicorn in a subprocess as `esmerald_app:app`: the controller on a
route of its own (`/ws/{room}`) and inside an `Include` of a `ChildEsmerald`
(`/nested/{room}`), beside an ordinary Esmerald HTTP handler (`/health`), with
`tether.lifespan` as the app's lifespan. `Room` (`host_room.Room`, with a
required `name`) appends its lifecycle to the file named by `TETHER_HOSTS_LOG`.
"""

import host_room
from esmerald import ChildEsmerald, Esmerald, Gateway, Include, get
from lilya.routing import WebSocketPath

import tether
from tether import Query


class Room(host_room.Room):
    """`host_room.Room` with a required `name`: a client that leaves it out is refused (403)."""

    async def on_connect(self, room: str, name: str = Query()) -> None:
        host_room.write(f"{name} joined {room}")


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
