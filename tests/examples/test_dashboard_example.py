"""The dashboard example: a producer owned by the app's lifespan pushes readings to every client."""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect as ws_client

from examples.dashboard.app import GROUP, Dashboard, create_app


@pytest.fixture
def app() -> Starlette:
    """The dashboard with a fast producer: a reading every 10 ms."""
    return create_app(interval=0.01)


@pytest.mark.anyio
async def test_every_client_receives_the_producers_readings(ws_connect):
    async with ws_connect("/ws") as one, ws_connect("/ws") as two, ws_connect("/ws") as three:
        for viewer in (one, two, three):
            readings = [await viewer.receive_json() for _ in range(5)]
            assert {r["type"] for r in readings} == {"reading"}
            assert all(0 <= r["value"] <= 100 for r in readings)
            seqs = [r["seq"] for r in readings]
            assert seqs == list(range(seqs[0], seqs[0] + 5)), "in order, none missed"
        # All three are members of the one group the producer publishes to.
        assert len(Dashboard.broker.members(GROUP)) == 3


@pytest.mark.anyio
async def test_a_viewer_leaves_the_group_when_it_disconnects(ws_connect):
    async with ws_connect("/ws") as viewer:
        await viewer.receive_json()
    assert not Dashboard.broker.members(GROUP)


@pytest.mark.anyio
async def test_the_page_is_served_at_the_root(app: Starlette):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        page = await http.get("/")
    assert page.status_code == 200 and "new WebSocket(" in page.text


@pytest.mark.anyio
async def test_python_m_examples_dashboard(serve_example: Callable[..., int]):
    port = serve_example("dashboard", "--interval", "0.05")
    with anyio.fail_after(10):
        async with ws_client(f"ws://127.0.0.1:{port}/ws") as viewer:
            first, second = json.loads(await viewer.recv()), json.loads(await viewer.recv())
    assert first["type"] == "reading" and second["seq"] == first["seq"] + 1
