"""One controller mounted in each host framework, for tests/controllers/test_mounting.py.

Served by uvicorn in a subprocess: `hosts_app:starlette_app`, `:fastapi_app`,
`:lilya_app`, `:ravyn_app` (a route of its own) and `:ravyn_include_app`
(an `Include` of a child app). Each runs `tether.lifespan` as its lifespan;
`host_room.Room` appends its lifecycle to the file named by `TETHER_HOSTS_LOG`.
"""

from fastapi import FastAPI
from host_room import Room
from lilya.apps import Lilya
from lilya.routing import WebSocketPath
from ravyn import Include, Ravyn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import tether

starlette_app = Starlette(routes=[WebSocketRoute("/ws/{room}", Room)], lifespan=tether.lifespan)

fastapi_app = FastAPI(lifespan=tether.lifespan)
fastapi_app.router.add_websocket_route("/ws/{room}", Room)

lilya_app = Lilya(routes=[WebSocketPath("/ws/{room}", Room)], lifespan=tether.lifespan)

ravyn_app = Ravyn(routes=[WebSocketPath("/ws/{room}", Room)], lifespan=tether.lifespan)

ravyn_include_app = Ravyn(
    routes=[Include("/ws", app=Ravyn(routes=[WebSocketPath("/{room}", Room)]))],
    lifespan=tether.lifespan,
)
