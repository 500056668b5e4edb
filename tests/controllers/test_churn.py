"""Connection churn under a real server: nothing accumulates per connection.

uvicorn (`--ws websockets`) serves `churn_app`; the `websockets` client opens
and closes 2,200 connections (200 to warm up, then 2,000 measured) in
batches of 10, each sending one message. The server reports its own figures
at `/stats`. Tolerances:

- tasks: after the churn, the server's asyncio task count is back to the
  baseline taken after the warm-up, exactly (polled for up to 5 s while the
  last connections wind down);
- RSS: grows by less than 10 MiB over the 2,000 measured connections (each
  connection's dependency holds 16 KiB, so a leak of those alone would be
  ~31 MiB);
- objects: the number of gc-tracked objects grows by less than 500 after a
  collection, and no controller instance is left alive;
- counters: dependency setups == teardowns == on_connect == on_disconnect ==
  connections opened.

The client turns permessage-deflate off: with it, each connection's zlib
contexts make the server's C heap grow to a plateau that has nothing to do
with the app (measured here: +31 MiB after 2,000 connections, +36 MiB after
6,000, while Python objects stay flat); without it RSS grows by ~2 MiB.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from asgi_server import AsgiServer
from websockets.asyncio.client import connect as ws_connect

pytestmark = pytest.mark.anyio

WARM_UP = 200
CHURN = 2000
BATCH = 10
TASK_TOLERANCE = 0
RSS_TOLERANCE = 10 * 1024 * 1024
OBJECT_TOLERANCE = 500  # gc-tracked objects; a leak of one per connection would be 2,000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


@pytest.fixture
def server() -> Iterator[int]:
    """uvicorn serving churn_app on a free loopback port; always terminated."""
    with AsgiServer("tests.controllers.churn_app:app") as running:
        yield running.port


async def churn(port: int, start: int, count: int) -> None:
    """Open, use and close `count` connections, `BATCH` at a time."""

    async def one(n: int) -> None:
        url = f"ws://127.0.0.1:{port}/ws?name=c{n}"
        async with ws_connect(url, additional_headers={"x-agent": "churn"}, compression=None) as ws:
            await ws.send("hi")
            assert await ws.recv() == f"c{n}:hi"

    for first in range(start, start + count, BATCH):
        async with anyio.create_task_group() as tg:
            for n in range(first, min(first + BATCH, start + count)):
                tg.start_soon(one, n)


async def settled_stats(client: httpx.AsyncClient, port: int, connections: int) -> dict:
    """The server's stats once every connection has been torn down (at most 5 s)."""
    with anyio.fail_after(5):
        while True:
            stats = (await client.get(f"http://127.0.0.1:{port}/stats")).json()
            if stats["teardowns"] >= connections and stats["disconnects"] >= connections:
                return stats
            await anyio.sleep(0.05)


async def test_2000_connections_leave_no_tasks_memory_or_dependencies_behind(
    server: int,
) -> None:
    port = server
    async with httpx.AsyncClient(timeout=5) as client:
        with anyio.fail_after(120):
            await churn(port, 0, WARM_UP)
            await anyio.sleep(0.5)  # the warm-up's last server tasks wind down: a true baseline
            before = await settled_stats(client, port, WARM_UP)
            await churn(port, WARM_UP, CHURN)
            total = WARM_UP + CHURN
            after = await settled_stats(client, port, total)
            with anyio.move_on_after(5):  # the last connections' server tasks wind down
                while after["tasks"] > before["tasks"] + TASK_TOLERANCE:
                    await anyio.sleep(0.05)
                    after = await settled_stats(client, port, total)
    growth = after["rss"] - before["rss"]
    print(
        f"\nchurn: tasks {before['tasks']} -> {after['tasks']}, "
        f"RSS {before['rss'] / 2**20:.1f} -> {after['rss'] / 2**20:.1f} MiB "
        f"(+{growth / 2**20:.2f} MiB over {CHURN} connections), "
        f"gc objects {before['objects']} -> {after['objects']}"
    )
    assert after["tasks"] <= before["tasks"] + TASK_TOLERANCE, "server tasks left behind"
    assert growth < RSS_TOLERANCE, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert after["objects"] - before["objects"] < OBJECT_TOLERANCE, (before, after)
    assert after["controllers"] == 0, f"{after['controllers']} controllers still alive"
    for counter in ("setups", "teardowns", "connects", "disconnects"):
        assert after[counter] == total, f"{counter}: {after[counter]} != {total}"
