"""The same controller class mounts unchanged in Starlette, FastAPI, Lilya and Ravyn.

In process with `tether.testing`, and end to end: each host's app (see
`hosts_app`) under uvicorn, with a real `websockets` client, through to the
host's lifespan shutdown.
"""

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_server import AsgiServer
from fastapi import FastAPI
from lilya.apps import Lilya
from lilya.routing import WebSocketPath
from ravyn import Include, Ravyn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tether import Query, WebSocket, WebSocketController
from tether.testing import connect

pytestmark = pytest.mark.anyio
HERE = Path(__file__).parent


class Chat(WebSocketController):
    encoding = "json"

    async def on_connect(self, websocket: WebSocket, room: str, name: str = Query("anon")) -> None:
        await websocket.accept()
        await websocket.send_json({"joined": room, "as": name})

    async def on_receive(self, data: dict, room: str) -> dict:
        return {"room": room, "echo": data}

    async def on_disconnect(self, close_code: int) -> None:
        disconnects.append(close_code)


disconnects: list[int] = []


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
    disconnects.clear()
    async with connect(make_app(), "/ws/lobby?name=ada") as ws:
        assert await ws.receive_json() == {"joined": "lobby", "as": "ada"}
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"room": "lobby", "echo": {"text": "hi"}}
        await ws.close(1001)
    assert disconnects == [1001]


HOSTS = ["starlette_app", "fastapi_app", "lilya_app", "ravyn_app", "ravyn_include_app"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the websockets client is asyncio-only
@pytest.mark.parametrize("host", HOSTS)
async def test_each_host_serves_the_controller_under_uvicorn_through_its_lifespan(
    tmp_path: Path, host: str
) -> None:
    log = tmp_path / "hosts.log"
    server = AsgiServer(
        f"hosts_app:{host}", app_dir=HERE, env={"TETHER_HOSTS_LOG": str(log)}, capture=True
    )
    try:
        with anyio.fail_after(15):
            async with ws_connect(server.url("/ws/lobby?name=ada")) as ws:
                await ws.send(json.dumps({"text": "hi"}))
                reply = json.loads(await ws.recv())
                server.process.send_signal(signal.SIGTERM)  # the host's lifespan ends
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            while server.process.poll() is None:
                await anyio.sleep(0.05)
    finally:
        output = server.stop()
    assert reply == {"room": "lobby", "db": "pool", "echo": {"text": "hi"}}
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert log.read_text().splitlines() == [
        "pool up",  # resolved as the client connects, before on_connect
        "ada joined lobby",
        "on_disconnect 1001",
        "pool down",
    ], output
