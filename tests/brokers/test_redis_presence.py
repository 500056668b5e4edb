"""Presence in RedisBroker against a real redis-server: two brokers stand for two processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio
from broker_helpers import WAIT, Client
from presence_scenarios import (
    HEARTBEAT,
    a_killed_process_members_leave_once_per_group,
    a_thousand_joins_and_leaves_in_churn_leave_nothing_behind,
    stop_takes_members_out_and_a_restart_brings_them_back,
    two_processes_agree_and_watchers_hear_each_change,
    worker_command,
)

from tether.brokers import RedisBroker
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


@pytest.fixture
async def node_a(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(
        redis_server.url, channel_prefix=prefix, presence_heartbeat=HEARTBEAT
    ) as broker:
        yield broker


@pytest.fixture
async def node_b(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(
        redis_server.url, channel_prefix=prefix, presence_heartbeat=HEARTBEAT
    ) as broker:
        yield broker


async def keys_left(server: RedisServer, prefix: str) -> list[bytes]:
    async with redis.asyncio.Redis.from_url(server.url) as client:
        return sorted(await client.keys(prefix + "*"))


async def test_two_processes_agree_and_watchers_on_both_hear_every_change(
    node_a: RedisBroker, node_b: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    await two_processes_agree_and_watchers_hear_each_change(
        node_a, node_b, ["room"], lambda: keys_left(redis_server, prefix)
    )


async def test_a_thousand_joins_and_leaves_in_churn_leave_nothing_behind(
    node_a: RedisBroker, node_b: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    await a_thousand_joins_and_leaves_in_churn_leave_nothing_behind(
        node_a, node_b, ["churn"], lambda: keys_left(redis_server, prefix)
    )


async def test_a_bad_payload_is_refused_before_redis_hears_of_it(
    node_a: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    member = Client()
    with pytest.raises(TypeError, match="JSON-able"):
        await node_a.track("room", member.queue, "ada", {"when": object()})
    with pytest.raises(ValueError, match="over the limit of 1024"):
        await node_a.track("room", member.queue, "ada", "x" * 1025)
    with pytest.raises(TypeError, match="presence key must be a str"):
        await node_a.track("room", member.queue, 7, {})  # type: ignore[arg-type]
    assert await keys_left(redis_server, prefix) == []


async def test_a_process_that_was_swept_registers_its_members_again(
    node_a: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    member = Client()
    await node_a.track("room", member.queue, "ada", {"device": "laptop"})
    async with redis.asyncio.Redis.from_url(redis_server.url) as client:
        await client.flushdb()  # as a Redis restarted without its data would be
    with anyio.fail_after(WAIT):
        while await node_a.presence("room") != {"ada": [{"device": "laptop"}]}:
            await anyio.sleep(HEARTBEAT / 4)
    await node_a.untrack_all(member.queue)
    assert await keys_left(redis_server, prefix) == []


async def test_a_killed_process_members_leave_with_one_leave_diff(
    node_a: RedisBroker, node_b: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    command = worker_command(RedisBroker, redis_server.url, prefix, HEARTBEAT, ["room"])
    await a_killed_process_members_leave_once_per_group(
        node_a, node_b, command, ["room"], HEARTBEAT, lambda: keys_left(redis_server, prefix)
    )


async def test_stop_takes_members_out_of_redis_and_a_restart_brings_them_back(
    node_a: RedisBroker, node_b: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    await stop_takes_members_out_and_a_restart_brings_them_back(
        node_a, node_b, lambda: keys_left(redis_server, prefix)
    )


@pytest.mark.parametrize("heartbeat", [0, -1.0])
def test_a_heartbeat_that_is_not_positive_fails_where_the_broker_is_made(heartbeat: float) -> None:
    with pytest.raises(ValueError, match="presence_heartbeat must be a positive number"):
        RedisBroker("redis://127.0.0.1:1/0", presence_heartbeat=heartbeat)
