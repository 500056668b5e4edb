"""Presence in RedisBroker against a real redis-server: two brokers stand for two processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio
from broker_helpers import WAIT, Client, running
from presence_scenarios import (
    a_killed_process_members_leave_once_per_group,
    diffs,
    stop_takes_members_out_and_a_restart_brings_them_back,
    worker_command,
)

from tether.brokers import RedisBroker
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio

HEARTBEAT = 1.0  # a loaded machine may stall a live process for half a second


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
    ada, bob, watch_a, watch_b = Client("ada"), Client("bob"), Client("wa"), Client("wb")
    async with running(ada, bob, watch_a, watch_b):
        for node, watcher in ((node_a, watch_a), (node_b, watch_b)):
            await node.subscribe("room", watcher.queue)
            await node.watch_presence("room", watcher.queue)
        await node_a.subscribe("room", ada.queue)
        await node_a.track("room", ada.queue, "ada", {"device": "laptop"})
        await node_b.subscribe("room", bob.queue)
        await node_b.track("room", bob.queue, "bob", {"device": "phone"})
        expected = {"ada": [{"device": "laptop"}], "bob": [{"device": "phone"}]}
        assert await node_a.presence("room") == await node_b.presence("room") == expected
        assert await node_a.presence_count("room") == await node_b.presence_count("room") == 2

        await node_b.unsubscribe_all(bob.queue)
        await node_b.untrack_all(bob.queue)
        await watch_a.wait_for(3)
        await watch_b.wait_for(3)
        for watcher in (watch_a, watch_b):
            assert diffs(watcher) == [
                {"event": "presence_diff", "group": "room", "joins": j, "leaves": left}
                for j, left in [
                    ({"ada": [{"device": "laptop"}]}, {}),
                    ({"bob": [{"device": "phone"}]}, {}),
                    ({}, {"bob": [{"device": "phone"}]}),
                ]
            ]
        assert await node_a.presence("room") == {"ada": [{"device": "laptop"}]}
        assert ada.texts == [] and bob.texts == []  # diffs only to those who asked
        await node_a.untrack_all(ada.queue)
        await node_a.unsubscribe_all(watch_a.queue)
        await node_b.unsubscribe_all(watch_b.queue)
    assert await keys_left(redis_server, prefix) == []


async def test_a_thousand_joins_and_leaves_in_churn_leave_nothing_behind(
    node_a: RedisBroker, node_b: RedisBroker, redis_server: RedisServer, prefix: str
) -> None:
    members = [Client(f"c{n}") for n in range(1000)]
    peak = 0

    async def churn(node: RedisBroker, share: list[Client]) -> None:
        nonlocal peak
        for n, member in enumerate(share):
            await node.track("churn", member.queue, f"user{n % 37}", {"n": n})
            if n % 3 == 0:
                peak = max(peak, await node.presence_count("churn"))
            if n >= 10:  # keep ten present per process, the oldest leaving
                await node.untrack("churn", share[n - 10].queue)
        for member in share[-10:]:
            await node.untrack_all(member.queue)

    with anyio.fail_after(WAIT * 6):
        async with anyio.create_task_group() as tg:
            tg.start_soon(churn, node_a, members[:500])
            tg.start_soon(churn, node_b, members[500:])
    assert peak > 0
    assert await node_a.presence_count("churn") == 0
    assert await node_a.presence("churn") == {}
    assert await keys_left(redis_server, prefix) == []


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
