"""The echo example: in process, and as `python -m examples.echo`."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from websockets.asyncio.client import connect as ws_client

from examples.echo.app import app
from tether.testing import connect


@pytest.mark.anyio
async def test_echo_sends_each_message_back():
    async with connect(app, "/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "echo: hello"
        await ws.send_text("héllo again")
        assert await ws.receive_text() == "echo: héllo again"


@pytest.mark.anyio
async def test_python_m_examples_echo(serve_example: Callable[..., int]):
    port = serve_example("echo")
    with anyio.fail_after(10):
        async with ws_client(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            assert await ws.recv() == "echo: hello"
