"""Presence end to end on a Redis Cluster: two uvicorn processes, `websockets` clients.

The app of `test_presence_servers`, with a `RedisClusterBroker`: both
processes agree on who is in a room, and when one is killed with SIGKILL its
member leaves the other's `presence()` with a leave diff.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import redis.asyncio
from asgi_server import AsgiServer
from test_presence_servers import HEARTBEAT, TARGET, TIMEOUT, agree_then_a_killed_ones_member_leaves

from tether.testing.redis import RedisClusterServers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def two_servers(redis_cluster: RedisClusterServers) -> Iterator[tuple[AsgiServer, AsgiServer]]:
    env = {
        "TETHER_REDIS_URL": redis_cluster.url,
        "TETHER_REDIS_CLUSTER": "1",
        "TETHER_PRESENCE_HEARTBEAT": str(HEARTBEAT),
    }
    with AsgiServer(TARGET, env=env) as a, AsgiServer(TARGET, env=env) as b:
        yield a, b


async def test_two_processes_on_a_cluster_agree_and_a_killed_ones_member_leaves(
    two_servers: tuple[AsgiServer, AsgiServer], redis_cluster: RedisClusterServers
) -> None:
    await agree_then_a_killed_ones_member_leaves(*two_servers, "deck")
    with anyio.fail_after(TIMEOUT):  # the last leave travels after ada's close
        while await deck_keys(redis_cluster):
            await anyio.sleep(0.05)


async def deck_keys(cluster: RedisClusterServers) -> list[bytes]:
    """Every key of the room's group on any node (`SCAN`)."""
    found: list[bytes] = []
    for port in cluster.ports:
        async with redis.asyncio.Redis(host="127.0.0.1", port=port) as node:
            found += [key async for key in node.scan_iter(match="tether:*{room:deck}*")]
    return found
