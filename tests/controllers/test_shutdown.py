"""Graceful shutdown under a real server: SIGTERM closes open connections with 1001."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(ws: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.controllers.shutdown_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--ws", ws,
               "--lifespan", "on", "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "TETHER_TEST_LOG": str(log)}
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server, port
        time.sleep(0.05)
    server.kill()
    raise RuntimeError("uvicorn did not start within 15 s")


@pytest.mark.parametrize("ws", ["websockets", "wsproto"])
async def test_sigterm_closes_every_connection_with_1001_and_tears_down(
    ws: str, tmp_path: Path
) -> None:
    log = tmp_path / "endings.log"
    server, port = start_server(ws, log)
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
        server.kill()
        server.wait()
    assert codes == [1001, 1001, 1001]
    lines = log.read_text().splitlines()
    assert lines.count("disconnect 1001") == 3
    assert lines.count("teardown") == lines.count("setup") == 3
    # on_disconnect runs before its connection's dependencies are torn down
    assert lines.index("disconnect 1001") < lines.index("teardown")
    # uvicorn exits by re-raising the signal it caught, after a clean shutdown
    assert server.returncode in (0, -signal.SIGTERM)
