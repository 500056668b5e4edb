"""Graceful shutdown under a real server: SIGTERM closes open connections with 1001."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
from asgi_server import AsgiServer
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


@pytest.mark.parametrize("ws", ["websockets", "wsproto"])
async def test_sigterm_closes_every_connection_with_1001_and_tears_down(
    ws: str, tmp_path: Path
) -> None:
    log = tmp_path / "endings.log"
    running = AsgiServer(
        "tests.controllers.shutdown_app:app", ws=ws, env={"TETHER_TEST_LOG": str(log)}
    )
    server, port = running.process, running.port
    codes: list[int | None] = []
    try:
        clients = [await ws_connect(f"ws://127.0.0.1:{port}/") for _ in range(3)]
        for client in clients:  # each connection is live and served
            await client.send("ping")
            assert await client.recv() == "ping"
        server.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            for client in clients:
                with pytest.raises(ConnectionClosed):
                    await client.recv()
                codes.append(client.close_code)
        with anyio.fail_after(15):
            while server.poll() is None:
                await anyio.sleep(0.05)
    finally:
        running.stop()
    assert codes == [1001, 1001, 1001]
    lines = log.read_text().splitlines()
    assert lines.count("disconnect 1001") == 3
    assert lines.count("teardown") == lines.count("setup") == 3
    # on_disconnect runs before its connection's dependencies are torn down
    assert lines.index("disconnect 1001") < lines.index("teardown")
    # uvicorn exits by re-raising the signal it caught, after a clean shutdown
    assert server.returncode in (0, -signal.SIGTERM)
