"""What every host framework must do with one controller class, in process and under uvicorn.

`tests/controllers/test_mounting.py` and `test_esmerald.py` (which runs in a
venv of its own) call these with their hosts' apps.
"""

import json
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_server import AsgiServer
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tether import Query, WebSocket, WebSocketController
from tether.testing import connect

HERE = Path(__file__).parent
disconnects: list[int] = []  # the close codes Chat's on_disconnect was given


class Chat(WebSocketController):
    """Greets with the room and the name from the query; echoes each message with its room."""

    encoding = "json"

    async def on_connect(self, websocket: WebSocket, room: str, name: str = Query("anon")) -> None:
        await websocket.accept()
        await websocket.send_json({"joined": room, "as": name})

    async def on_receive(self, data: dict, room: str) -> dict:
        return {"room": room, "echo": data}

    async def on_disconnect(self, close_code: int) -> None:
        disconnects.append(close_code)


async def path_params_arrive(app: Any) -> None:
    """In process: `app` routes `/ws/{room}` to `Chat`, with the room and the query."""
    disconnects.clear()
    async with connect(app, "/ws/lobby?name=ada") as ws:
        assert await ws.receive_json() == {"joined": "lobby", "as": "ada"}
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"room": "lobby", "echo": {"text": "hi"}}
        await ws.close(1001)
    assert disconnects == [1001]


async def served_through_the_lifespan(tmp_path: Path, target: str, path: str) -> None:
    """Under uvicorn: `target` (a `host_room.Room` app) serves `path` until SIGTERM ends it.

    The connection is closed 1001 and the app-scoped pool torn down last.
    """
    log = tmp_path / "hosts.log"
    server = AsgiServer(target, app_dir=HERE, env={"TETHER_HOSTS_LOG": str(log)}, capture=True)
    try:
        with anyio.fail_after(15):
            async with ws_connect(server.url(f"{path}?name=ada")) as ws:
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
