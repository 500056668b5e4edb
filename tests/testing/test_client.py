"""`AppClient`: an app with its lifespan running, and connections to it; other frameworks."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Query
from fastapi import WebSocket as FastAPIWebSocket
from lilya.apps import Lilya
from lilya.routing import WebSocketPath
from lilya.websockets import WebSocket as LilyaWebSocket
from testing_apps import echo_app, make_app_with_lifespan

from tether.testing import AppClient, ServerClosed, lifespan

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- the app client


async def test_app_client_runs_the_lifespan_around_its_connections() -> None:
    events: list[str] = []
    app = make_app_with_lifespan(events)
    async with AppClient(app) as client:
        assert client.state["greeting"] == "hello from lifespan"
        async with client.connect("/ws") as ws:
            assert await ws.receive_text() == "hello from lifespan"
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_an_app_without_lifespan_support() -> None:
    # AppClient's default lifespan="auto" goes on without one, as uvicorn does
    async with AppClient(echo_app) as client:
        assert client.state == {}
        async with client.connect("/") as ws:
            await ws.send_text("still works")
            assert await ws.receive_text() == "still works"
    # asking for it explicitly surfaces the app's own error
    with pytest.raises(AssertionError):
        async with lifespan(echo_app):
            pass


async def test_app_client_must_be_entered_before_connecting() -> None:
    client = AppClient(make_app_with_lifespan([]))
    with pytest.raises(RuntimeError, match="async with AppClient"):
        client.connect("/ws")


# --------------------------------------------------------------------------- other frameworks


async def test_a_fastapi_app() -> None:
    api = FastAPI()

    @api.websocket("/items/{item_id}")
    async def item(websocket: FastAPIWebSocket, item_id: int, q: str = Query("none")) -> None:
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "q": q})
        await websocket.close()

    async with AppClient(api) as client, client.connect("/items/7?q=x") as ws:
        assert await ws.receive_json() == {"item_id": 7, "q": "x"}
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1000


async def test_a_lilya_app() -> None:
    async def echo(websocket: LilyaWebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"{text} in {websocket.path_params['room']}")
        await websocket.close(code=4000)

    lilya_app = Lilya(routes=[WebSocketPath("/ws/{room}", echo)])
    async with AppClient(lilya_app) as client, client.connect("/ws/r1") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi in r1"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 4000
