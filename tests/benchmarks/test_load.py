"""The multi-worker load test, run tiny: two uvicorn workers share one group over Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import anyio
import pytest

pytest.importorskip("redis")

from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from benchmarks.load.app import GROUP
from benchmarks.load.run import ROOT, free_port, markdown, run_load, wait_for_port


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


def test_two_workers_deliver_every_broadcast_to_every_client_and_leave_no_subscription() -> None:
    result = run_load(workers=(2,), clients=(40,), broadcasts=3, client_processes=2, deadline=60)
    [rung] = result["rows"]["2"]["rungs"]
    assert rung["connected"] == 40
    assert rung["received"] == rung["expected"] == 40 * 3
    assert sum(rung["spread"].values()) == 40
    assert rung["p50_ms"] <= rung["p95_ms"] <= rung["p99_ms"]
    assert rung["subscriptions_after"] == 0  # every worker unsubscribed once its clients left
    assert result["rows"]["2"]["most_clients_p95_under_500ms"] in (40, None)
    assert "| 2 | 40 |" in markdown(result)


async def _open_until_both_workers(url: str, most: int) -> dict[str, list[Any]]:
    """Open connections until two workers hold some (bounded); {worker pid: connections}."""
    by_worker: dict[str, list[Any]] = {}
    for _ in range(most):
        ws = await connect(url, open_timeout=30)
        joined = await asyncio.wait_for(ws.recv(), 30)
        by_worker.setdefault(str(joined).split()[1], []).append(ws)
        if len(by_worker) == 2 and all(len(c) >= 3 for c in by_worker.values()):
            break
    return by_worker


@pytest.mark.anyio
async def test_kill_9_of_one_worker_leaves_the_other_delivering_and_no_subscription_behind() -> (
    None
):
    from tether.brokers import RedisBroker
    from tether.testing.redis import RedisServer

    with RedisServer() as redis_server:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.load.app:app", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2", "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, "TETHER_LOAD_REDIS": redis_server.url},
        )  # fmt: skip
        try:
            wait_for_port(port, 30)
            by_worker = await _open_until_both_workers(f"ws://127.0.0.1:{port}/", 200)
            if len(by_worker) < 2:
                pytest.skip("the kernel handed every connection to one worker")
            victim, survivor = sorted(by_worker, key=lambda pid: len(by_worker[pid]))
            os.kill(int(victim), signal.SIGKILL)
            for ws in by_worker[victim]:  # the killed worker's clients see the drop
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 30)
            async with RedisBroker(redis_server.url) as broker:
                for seq in range(3):
                    await broker.publish(GROUP, json.dumps({"seq": seq}))
            for ws in by_worker[survivor]:
                got = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for _ in range(3)]
                assert got == [{"seq": 0}, {"seq": 1}, {"seq": 2}]
            for ws in by_worker[survivor]:
                await ws.close()
            # The survivor unsubscribes once its last member left; the dead worker's
            # subscription went with its socket: back to none.
            async with Redis.from_url(redis_server.url) as client:
                with anyio.fail_after(30):
                    while (await client.pubsub_numsub(f"tether:{GROUP}"))[0][1]:
                        await anyio.sleep(0.05)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
