"""The pytest plugin's fixtures, as a test module uses them."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from starlette.applications import Starlette

from tether.testing import AppClient

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- fixtures


async def test_the_ws_connect_fixture(ws_connect: Any, app: Starlette) -> None:
    async with ws_connect("/ws/recorder") as ws:
        await ws.send_text("fixture")
        assert await ws.receive_text() == "FIXTURE"
    assert app.state.events[-1] == "disconnect 1000"


async def test_the_app_client_fixture(app_client: AppClient) -> None:
    async with app_client.connect("/ws/close") as ws:
        await ws.send_text("x")
        assert await ws.receive_text() == "x"


def test_the_redis_server_fixture(redis_server: Any) -> None:
    redis = pytest.importorskip("redis")
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    connection = redis.Redis.from_url(redis_server.url)
    try:
        assert connection.ping() is True
    finally:
        connection.close()


def test_importing_tether_testing_does_not_import_pytest() -> None:
    # Only pytest loads the plugin (the pytest11 entry point), so an app's own
    # scripts can use the client without pytest installed.
    code = "import sys, tether.testing; print('pytest' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
