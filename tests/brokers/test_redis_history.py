"""Group history in RedisBroker (Redis Streams), against a real redis-server.

Two brokers on one server stand for two processes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio
from broker_helpers import WAIT, Client, running

from tether.brokers import GroupHistory, Position, RedisBroker
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio

HISTORY = GroupHistory(size=2000, ttl=60)


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


@pytest.fixture
async def node_a(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(redis_server.url, history=HISTORY) as broker:
        yield broker


@pytest.fixture
async def node_b(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(redis_server.url, history=HISTORY) as broker:
        yield broker


def envelopes(client: Client) -> list[dict]:
    return [json.loads(text) for text in client.texts]


async def eventually(condition, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    """Wait, polling, until `condition()` holds; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


async def test_every_process_sees_the_same_positions_in_the_same_order(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    alice, bob = Client("alice on A"), Client("bob on B")
    joined = await node_a.recover(group, alice.queue, None)
    await node_b.recover(group, bob.queue, None)
    assert joined.position is not None and joined.position.offset == 0
    async with running(alice, bob):
        for i in range(50):
            await node_a.publish(group, {"from": "A", "seq": i})
            await node_b.publish(group, {"from": "B", "seq": i})
        await alice.wait_for(100)
        await bob.wait_for(100)
    assert envelopes(alice) == envelopes(bob)
    assert [e["offset"] for e in envelopes(alice)] == list(range(1, 101))
    assert {e["epoch"] for e in envelopes(alice)} == {joined.position.epoch}
    for node in ("A", "B"):
        seqs = [e["data"]["seq"] for e in envelopes(alice) if e["data"]["from"] == node]
        assert seqs == list(range(50))
    assert alice.sent[0]["position"] == Position(joined.position.epoch, 1)


async def test_a_member_that_reconnects_elsewhere_gets_the_thousand_it_missed_then_live_ones(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    bob = Client("bob on B")
    await node_b.recover(group, bob.queue, None)
    async with running(bob):
        await node_a.publish(group, "before")
        await bob.wait_for(1)
    last = bob.sent[-1]["position"]
    await node_b.unsubscribe_all(bob.queue)  # bob's connection drops

    for i in range(1000):
        await node_a.publish(group, i)

    back = Client("bob again, on A", maxsize=2000)
    result = await node_a.recover(group, back.queue, last)
    await node_b.publish(group, "live")
    async with running(back):
        await back.wait_for(1001)
    assert (result.recovered, result.replayed, result.reason) == (True, 1000, None)
    assert result.position == Position(last.epoch, 1001)
    assert [e["data"] for e in envelopes(back)] == [*range(1000), "live"]
    assert [e["offset"] for e in envelopes(back)] == list(range(2, 1003))


async def test_exclude_and_binary_messages_in_a_group_with_history(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    alice, bob = Client("alice on A"), Client("bob on B")
    await node_a.recover(group, alice.queue, None)
    await node_b.recover(group, bob.queue, None)
    async with running(alice, bob):
        await node_a.publish(group, "not for alice", exclude=alice.queue)
        await node_a.publish(group, b"\x00\xff")
        await bob.wait_for(2)
        await alice.wait_for(1)
    assert [e.get("data", e.get("bytes")) for e in envelopes(bob)] == ["not for alice", "AP8="]
    assert [e["bytes"] for e in envelopes(alice)] == ["AP8="]
    page = await node_b.history(group)
    assert [entry.data for entry in page.entries] == ["not for alice", b"\x00\xff"]


async def test_history_reads_pages_and_answers_plainly_for_bad_positions(
    node_a: RedisBroker, group: str
) -> None:
    for i in range(10):
        await node_a.publish(group, {"n": i})
    whole = await node_a.history(group)
    assert [entry.data["n"] for entry in whole.entries] == list(range(10))
    assert whole.complete and whole.position is not None and whole.position.offset == 10
    newest = await node_a.history(group, limit=3)
    assert [entry.data["n"] for entry in newest.entries] == [7, 8, 9]
    page = await node_a.history(group, since=whole.entries[3].position, limit=2)
    assert [entry.position.offset for entry in page.entries] == [5, 6]
    epoch = whole.position.epoch

    other = f"{group}-other"
    await node_a.publish(other, "x")
    elsewhere = (await node_a.history(other)).position
    assert (await node_a.recover(group, Client().queue, elsewhere)).reason == "epoch"
    ahead = await node_a.recover(group, Client().queue, Position(epoch, 99))
    assert (ahead.recovered, ahead.reason) == (False, "future")
    assert (await node_a.recover(group, Client().queue, Position(epoch, 4))).recovered


async def test_a_position_older_than_the_stream_keeps_is_not_recovered(
    redis_server: RedisServer, group: str
) -> None:
    async with RedisBroker(redis_server.url, history=GroupHistory(size=10)) as broker:
        for i in range(500):
            await broker.publish(group, i)
        epoch = (await broker.history(group)).position.epoch  # type: ignore[union-attr]
        result = await broker.recover(group, Client().queue, Position(epoch, 3))
        assert (result.recovered, result.reason, result.replayed) == (False, "expired", 0)
        async with redis.asyncio.Redis.from_url(redis_server.url) as client:
            kept = await client.xlen(f"tether:history:{group}")
        assert 10 <= kept < 500  # MAXLEN ~ trims by whole nodes: bounded, not exact


async def test_history_expires_after_its_ttl_when_nobody_publishes(
    redis_server: RedisServer, group: str
) -> None:
    async with RedisBroker(redis_server.url, history=GroupHistory(size=10, ttl=0.2)) as broker:
        await broker.publish(group, "x")
        before = (await broker.history(group)).position
        async with redis.asyncio.Redis.from_url(redis_server.url) as client:
            assert 0 < await client.pttl(f"tether:history:{group}") <= 200
            with anyio.fail_after(WAIT):
                while await client.exists(f"tether:history:{group}", f"tether:epoch:{group}"):
                    await anyio.sleep(0.05)
        after = await broker.recover(group, Client().queue, before)
        assert (after.recovered, after.reason) == (False, "epoch")


async def test_a_process_that_lost_redis_catches_up_from_the_stream(
    redis_server: RedisServer, group: str
) -> None:
    slow = {"reconnect_delay": 0.5, "max_reconnect_delay": 0.5}
    async with (
        RedisBroker(redis_server.url, history=HISTORY) as a,
        RedisBroker(redis_server.url, history=HISTORY, **slow) as b,
    ):
        bob = Client("bob on B", maxsize=500)
        await b.recover(group, bob.queue, None)
        async with running(bob):
            async with redis.asyncio.Redis.from_url(redis_server.url) as client:
                await client.client_kill_filter(_type="pubsub")  # every subscriber drops
            for i in range(200):  # while B waits to reconnect
                await a.publish(group, i)
            assert not b.connected  # these went by while B was not listening
            await bob.wait_for(200)
            await a.publish(group, "live")
            await bob.wait_for(201)
    assert [e["data"] for e in envelopes(bob)] == [*range(200), "live"]
    assert [e["offset"] for e in envelopes(bob)] == list(range(1, 202))


async def test_with_persistence_a_redis_restart_loses_nothing_on_any_process(
    persistent_redis_server: RedisServer, group: str
) -> None:
    server = persistent_redis_server
    options = {"history": HISTORY, "reconnect_delay": 0.05, "max_reconnect_delay": 0.2}
    async with RedisBroker(server.url, **options) as a, RedisBroker(server.url, **options) as b:
        alice, bob = Client("alice on A"), Client("bob on B")
        await a.recover(group, alice.queue, None)
        await b.recover(group, bob.queue, None)
        async with running(alice, bob):
            for i in range(20):
                await a.publish(group, {"from": "A", "seq": i})
                await b.publish(group, {"from": "B", "seq": i})
            await bob.wait_for(40)
            server.stop()
            await eventually(lambda: not a.connected and not b.connected)
            with anyio.fail_after(WAIT):
                for i in range(20, 40):  # into each process's outbox
                    await a.publish(group, {"from": "A", "seq": i})
                    await b.publish(group, {"from": "B", "seq": i})
            server.start()
            for i in range(40, 60):
                await a.publish(group, {"from": "A", "seq": i})
                await b.publish(group, {"from": "B", "seq": i})
            await alice.wait_for(120)
            await bob.wait_for(120)
    for client in (alice, bob):
        seen = envelopes(client)
        assert [e["offset"] for e in seen] == list(range(1, 121)), client.name
        assert len({e["epoch"] for e in seen}) == 1
        for node in ("A", "B"):
            seqs = [e["data"]["seq"] for e in seen if e["data"]["from"] == node]
            assert seqs == list(range(60)), (client.name, node)


async def test_without_persistence_a_redis_restart_starts_a_new_epoch(
    private_redis_server: RedisServer, group: str
) -> None:
    server = private_redis_server
    options = {"history": HISTORY, "reconnect_delay": 0.05, "max_reconnect_delay": 0.2}
    async with RedisBroker(server.url, **options) as a, RedisBroker(server.url, **options) as b:
        alice, bob = Client("alice on A"), Client("bob on B")
        await a.recover(group, alice.queue, None)
        await b.recover(group, bob.queue, None)
        async with running(alice, bob):
            for i in range(5):
                await a.publish(group, i)
            await bob.wait_for(5)
            old = bob.sent[-1]["position"]
            server.stop()
            await eventually(lambda: not a.connected and not b.connected)
            server.start()
            await eventually(lambda: a.connected and b.connected)
            await a.publish(group, "after")
            await alice.wait_for(6)
            await bob.wait_for(6)
        for client in (alice, bob):
            last = envelopes(client)[-1]
            assert (last["data"], last["offset"]) == ("after", 1)
            assert last["epoch"] != old.epoch
        late = Client("carol on B")
        result = await b.recover(group, late.queue, old)
        assert (result.recovered, result.reason) == (False, "epoch")
        assert result.position == Position(last["epoch"], 1)


def test_history_works_from_connections_on_another_loop(
    redis_server: RedisServer, group: str
) -> None:
    """As under Starlette's TestClient: the broker lives on one loop, a connection on another."""
    import threading

    broker = RedisBroker(redis_server.url, history=HISTORY)
    ready, finish = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    async def first_connection() -> None:  # binds the broker to this thread's loop
        bob = Client("bob")
        await broker.recover(group, bob.queue, None)
        async with running(bob):
            ready.set()
            await bob.wait_for(3)
            await anyio.to_thread.run_sync(finish.wait, WAIT)
        await broker.unsubscribe_all(bob.queue)
        results["bob"] = [e["data"] for e in envelopes(bob)]
        await broker.stop()

    async def second_connection() -> None:  # another loop: forwarded to the broker's
        start = (await broker.history(group)).position
        for n in range(3):
            await broker.publish(group, n)
        carol = Client("carol")
        recovery = await broker.recover(group, carol.queue, start)
        async with running(carol):
            await carol.wait_for(3)
        await broker.unsubscribe_all(carol.queue)
        results["carol"] = (recovery.recovered, [e["data"] for e in envelopes(carol)])

    thread = threading.Thread(target=anyio.run, args=(first_connection,))
    thread.start()
    try:
        assert ready.wait(WAIT)
        anyio.run(second_connection)
    finally:
        finish.set()
        thread.join(WAIT)
    assert results == {"bob": [0, 1, 2], "carol": (True, [0, 1, 2])}


async def test_more_missed_than_the_queue_holds_is_not_recovered(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    start = (await node_a.history(group)).position
    for i in range(20):
        await node_a.publish(group, i)
    small = Client("small", maxsize=10)
    result = await node_b.recover(group, small.queue, start)
    assert (result.recovered, result.reason, result.replayed) == (False, "overflow", 0)
    async with running(small):
        await node_a.publish(group, "live")
        await small.wait_for(1)
    assert [e["data"] for e in envelopes(small)] == ["live"]  # live from the group's end
