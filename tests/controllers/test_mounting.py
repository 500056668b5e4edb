"""The same controller class mounts unchanged in Starlette, FastAPI, Lilya and Ravyn.

In process with `tether.testing`, and end to end: each host's app (see
`hosts_app`) under uvicorn, with a real `websockets` client, through to the
host's lifespan shutdown.
"""

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from host_scenarios import Chat, path_params_arrive, served_through_the_lifespan
from lilya.apps import Lilya
from lilya.routing import WebSocketPath
from ravyn import Include, Ravyn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

pytestmark = pytest.mark.anyio


def starlette_app() -> Any:
    return Starlette(routes=[WebSocketRoute("/ws/{room}", Chat)])


def fastapi_app() -> Any:
    app = FastAPI()
    app.router.add_websocket_route("/ws/{room}", Chat)
    return app


def lilya_app() -> Any:
    return Lilya(routes=[WebSocketPath("/ws/{room}", Chat)])


def ravyn_app() -> Any:
    return Ravyn(routes=[WebSocketPath("/ws/{room}", Chat)])


def ravyn_include_app() -> Any:
    # An Include of an ASGI app matches its path as a prefix, as Starlette's Mount does.
    return Ravyn(routes=[Include("/ws", app=Ravyn(routes=[WebSocketPath("/{room}", Chat)]))])


@pytest.mark.parametrize(
    "make_app", [starlette_app, fastapi_app, lilya_app, ravyn_app, ravyn_include_app]
)
async def test_path_params_arrive_in_every_framework(make_app: Any) -> None:
    await path_params_arrive(make_app())


HOSTS = ["starlette_app", "fastapi_app", "lilya_app", "ravyn_app", "ravyn_include_app"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the websockets client is asyncio-only
@pytest.mark.parametrize("host", HOSTS)
async def test_each_host_serves_the_controller_under_uvicorn_through_its_lifespan(
    tmp_path: Path, host: str
) -> None:
    await served_through_the_lifespan(tmp_path, f"hosts_app:{host}", "/ws/lobby")
