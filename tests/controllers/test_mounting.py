"""The same controller class mounts unchanged in Starlette, FastAPI and Lilya."""

from typing import Any

import pytest
from fastapi import FastAPI
from lilya.apps import Lilya
from lilya.routing import WebSocketPath
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Query, WebSocket, WebSocketController
from tether.testing import connect

pytestmark = pytest.mark.anyio


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


@pytest.mark.parametrize("make_app", [starlette_app, fastapi_app, lilya_app])
async def test_path_params_arrive_in_every_framework(make_app: Any) -> None:
    disconnects.clear()
    async with connect(make_app(), "/ws/lobby?name=ada") as ws:
        assert await ws.receive_json() == {"joined": "lobby", "as": "ada"}
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"room": "lobby", "echo": {"text": "hi"}}
        await ws.close(1001)
    assert disconnects == [1001]
