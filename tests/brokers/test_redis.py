"""RedisBroker against a real redis-server: two brokers stand for two processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio
from broker_helpers import WAIT, Client, running

from tether.brokers import RedisBroker
from tether.close_codes import TRY_AGAIN_LATER
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


@pytest.fixture
async def node_a(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(redis_server.url) as broker:
        yield broker


@pytest.fixture
async def node_b(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    async with RedisBroker(redis_server.url) as broker:
        yield broker


async def subscribers(server: RedisServer, group: str, prefix: str = "tether:") -> int:
    """How many connections Redis says are subscribed to the group's channel."""
    async with redis.asyncio.Redis.from_url(server.url) as client:
        [(_, count)] = await client.pubsub_numsub(prefix + group)
        return count


async def eventually(condition, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    """Wait, polling, until `condition()` holds; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


async def test_messages_cross_between_nodes_in_order(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    alice, bob = Client("alice on A"), Client("bob on B")
    await node_a.subscribe(group, alice.queue)
    await node_b.subscribe(group, bob.queue)
    async with running(alice, bob):
        for i in range(100):
            await node_a.publish(group, {"from": "A", "seq": i})
            await node_b.publish(group, {"from": "B", "seq": i})
        await alice.wait_for(200)
        await bob.wait_for(200)
    for client in (alice, bob):
        for node in ("A", "B"):
            seqs = [m["seq"] for m in map(json.loads, client.texts) if m["from"] == node]
            assert seqs == list(range(100)), (client.name, node)


async def test_concurrent_publishers_share_round_trips_and_each_keeps_its_order(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    bob = Client("bob on B", maxsize=5_000)
    await node_b.subscribe(group, bob.queue)

    async def publisher(name: int) -> None:
        for seq in range(20):
            await node_a.publish(group, {"from": name, "seq": seq})

    async with running(bob):
        async with anyio.create_task_group() as tg:  # 100 publishes in flight at once
            for name in range(100):
                tg.start_soon(publisher, name)
        await bob.wait_for(2_000)
    received = [json.loads(text) for text in bob.texts]
    assert len(received) == 2_000
    for name in range(100):
        assert [m["seq"] for m in received if m["from"] == name] == list(range(20)), name


async def test_a_cancelled_publish_leaves_the_others_of_its_batch_alone(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    bob = Client("bob on B")
    await node_b.subscribe(group, bob.queue)
    async with running(bob), anyio.create_task_group() as tg:
        tg.start_soon(node_a.publish, group, "first")
        with anyio.CancelScope() as scope:
            scope.cancel()  # cancelled while it waits for its batch's reply
            await node_a.publish(group, "cancelled while waiting")
        tg.start_soon(node_a.publish, group, "last")
        await bob.wait_for(3)
    # Once written, a message goes out: cancelling only stops the wait for the reply.
    assert sorted(bob.texts) == ["cancelled while waiting", "first", "last"]


async def test_subscribe_returns_only_once_redis_confirmed_it(
    node_a: RedisBroker, node_b: RedisBroker
) -> None:
    for attempt in range(20):
        bob = Client("bob")
        group = f"fresh-{uuid.uuid4().hex[:8]}"
        await node_b.subscribe(group, bob.queue)
        await node_a.publish(group, f"right after subscribe #{attempt}")  # no sleep in between
        async with running(bob):
            await bob.wait_for(1)
        assert bob.texts == [f"right after subscribe #{attempt}"]
        await node_b.unsubscribe_all(bob.queue)


async def test_first_use_without_start_still_confirms_the_subscription(
    redis_server: RedisServer, node_a: RedisBroker
) -> None:
    for attempt in range(10):
        group = f"lazy-{uuid.uuid4().hex[:8]}"
        bob = Client("bob")
        lazy = RedisBroker(redis_server.url)  # never started: connects inside subscribe()
        try:
            await lazy.subscribe(group, bob.queue)
            await node_a.publish(group, f"hello #{attempt}")
            async with running(bob):
                await bob.wait_for(1)
        finally:
            await lazy.stop()
        assert bob.texts == [f"hello #{attempt}"]


async def test_text_and_binary_frames_survive_the_trip(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    bob = Client("bob")
    await node_b.subscribe(group, bob.queue)
    async with running(bob):
        await node_a.publish(group, "héllo\nworld ✓")
        await node_a.publish(group, b"\x00\xff\n")
        await node_a.publish(group, {"emoji": "🎉"})
        await bob.wait_for(3)
    assert bob.sent == [
        {"type": "websocket.send", "text": "héllo\nworld ✓"},
        {"type": "websocket.send", "bytes": b"\x00\xff\n"},
        {"type": "websocket.send", "text": '{"emoji":"🎉"}'},
    ]


async def test_exclude_holds_on_every_node(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    alice, carol, bob = Client("alice on A"), Client("carol on A"), Client("bob on B")
    await node_a.subscribe(group, alice.queue)
    await node_a.subscribe(group, carol.queue)
    await node_b.subscribe(group, bob.queue)
    async with running(alice, carol, bob):
        await node_a.publish(group, "alice says hi", exclude=alice.queue)
        await node_a.publish(group, "end")
        await bob.wait_for(2)
        await carol.wait_for(2)
        await alice.wait_for(1)
        await anyio.sleep(0.05)
    assert alice.texts == ["end"]
    assert carol.texts == ["alice says hi", "end"]
    assert bob.texts == ["alice says hi", "end"]


async def test_one_redis_subscription_per_group_per_node(
    redis_server: RedisServer, node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    alice, carol, bob = Client("alice"), Client("carol"), Client("bob")
    assert await subscribers(redis_server, group) == 0
    await node_a.subscribe(group, alice.queue)
    await node_a.subscribe(group, carol.queue)
    assert await subscribers(redis_server, group) == 1
    await node_b.subscribe(group, bob.queue)
    assert await subscribers(redis_server, group) == 2
    await node_a.unsubscribe(group, alice.queue)
    assert await subscribers(redis_server, group) == 2
    await node_a.unsubscribe_all(carol.queue)
    await node_a.unsubscribe_all(carol.queue)  # idempotent
    assert await subscribers(redis_server, group) == 1  # node A only hears groups it serves
    await node_b.unsubscribe(group, bob.queue)
    assert await subscribers(redis_server, group) == 0


async def test_a_thousand_members_on_one_node(
    redis_server: RedisServer, node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    clients = [Client(str(i)) for i in range(1000)]
    for client in clients:
        await node_b.subscribe(group, client.queue)
    assert await subscribers(redis_server, group) == 1
    async with running(*clients):
        for word in ("one", "two", "three"):
            await node_a.publish(group, word)
        for client in clients:
            await client.wait_for(3)
    assert all(client.texts == ["one", "two", "three"] for client in clients)


async def test_a_slow_consumer_drops_oldest_and_stays_bounded(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    fast = Client("fast")
    slow = Client("slow", stuck=True, maxsize=10, policy="drop_oldest")
    await node_b.subscribe(group, fast.queue)
    await node_b.subscribe(group, slow.queue)
    async with running(fast, slow):
        for i in range(1000):
            await node_a.publish(group, str(i))
            assert len(slow.queue) <= 10
        await fast.wait_for(1000)
        slow.unstick()
    assert fast.texts == [str(i) for i in range(1000)]
    assert len(slow.queue) <= 10
    assert slow.queue.dropped >= 980


async def test_a_slow_consumer_is_closed_with_1013(
    node_a: RedisBroker, node_b: RedisBroker, group: str
) -> None:
    fast = Client("fast")
    slow = Client("slow", maxsize=10, policy="close")
    await node_b.subscribe(group, fast.queue)
    await node_b.subscribe(group, slow.queue)
    async with running(fast):  # nothing drains the slow client's queue
        for i in range(100):
            await node_a.publish(group, str(i))
        await fast.wait_for(100)
    with anyio.fail_after(WAIT):
        await slow.queue.run()
    assert slow.queue.overflowed
    assert slow.sent[-1]["code"] == TRY_AGAIN_LATER
    assert fast.texts == [str(i) for i in range(100)]


async def test_publish_from_a_background_job(redis_server: RedisServer, group: str) -> None:
    async with RedisBroker(redis_server.url) as web_worker:
        bob = Client("bob")
        await web_worker.subscribe(group, bob.queue)
        job = RedisBroker(redis_server.url)  # no start(), no wiring: connects on first use
        try:
            await job.publish(group, {"event": "report ready"})
            async with running(bob):
                await bob.wait_for(1)
        finally:
            await job.stop()
    assert bob.texts == ['{"event":"report ready"}']


async def test_messages_published_by_other_redis_clients_arrive_as_they_are(
    redis_server: RedisServer, node_b: RedisBroker, group: str
) -> None:
    bob = Client("bob")
    await node_b.subscribe(group, bob.queue)
    async with redis.asyncio.Redis.from_url(redis_server.url) as client:
        await client.publish(f"tether:{group}", "from redis-cli")
    async with running(bob):
        await bob.wait_for(1)
    assert bob.texts == ["from redis-cli"]


async def test_redis_restart_reconnects_resubscribes_and_local_delivery_goes_on(
    private_redis_server: RedisServer, group: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = private_redis_server
    caplog.set_level(logging.INFO, logger="tether")
    options = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2}
    async with RedisBroker(server.url, **options) as a, RedisBroker(server.url, **options) as b:
        alice, bob, dora = Client("alice on A"), Client("bob on B"), Client("dora on B")
        await a.subscribe(group, alice.queue)
        await b.subscribe(group, bob.queue)
        async with running(alice, bob, dora):
            await a.publish(group, "before")
            await bob.wait_for(1)

            server.stop()
            await eventually(lambda: not a.connected and not b.connected)
            with anyio.fail_after(WAIT):
                await a.publish(group, "while down")  # neither raises nor hangs
                await b.subscribe(f"{group}-new", dora.queue)  # joins locally at once
            await alice.wait_for(2)  # a local member still gets it
            assert any("lost Redis" in r.getMessage() for r in caplog.records)

            server.start()
            await eventually(lambda: a.connected and b.connected)
            assert any("reconnected" in r.getMessage() for r in caplog.records)
            assert (a.reconnects, b.reconnects) == (1, 1)  # what metrics export
            await a.publish(group, "after")
            await a.publish(f"{group}-new", "to the group joined while down")
            await bob.wait_for(2)
            await alice.wait_for(3)
            await dora.wait_for(1)
    assert alice.texts == ["before", "while down", "after"]
    assert bob.texts == ["before", "after"]  # remote members miss what was sent while down
    assert dora.texts == ["to the group joined while down"]


async def test_stop_then_use_again_restarts(redis_server: RedisServer, group: str) -> None:
    a, b = RedisBroker(redis_server.url), RedisBroker(redis_server.url)
    bob = Client("bob")
    try:
        await b.subscribe(group, bob.queue)
        await b.stop()  # bob stays a member; the subscription comes back with the broker
        await b.start()
        assert b.connected
        await a.publish(group, "still here")
        async with running(bob):
            await bob.wait_for(1)
    finally:
        await a.stop()
        await b.stop()
    assert bob.texts == ["still here"]


def test_redis_broker_says_it_needs_asyncio_under_trio(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url)

    async def use_it() -> None:
        await broker.publish("room", "hi")

    with pytest.raises(RuntimeError, match="needs asyncio"):
        anyio.run(use_it, backend="trio")


def test_tether_brokers_imports_without_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import tether.brokers as b\n"
        "assert b.MemoryBroker and b.OutboundQueue and b.Broker\n"
        "try:\n    b.RedisBroker\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert "pip install 'tether[redis]'" in result.stdout


def test_one_broker_serves_connections_on_different_loops(
    redis_server: RedisServer, group: str
) -> None:
    """As under Starlette's TestClient without lifespan: a loop per connection, each in a thread."""
    import threading

    broker = RedisBroker(redis_server.url)  # module-level in a real app
    ready, finish = threading.Event(), threading.Event()
    results: dict[str, list[str]] = {}

    async def first_connection() -> None:  # binds the broker to this thread's loop
        bob = Client("bob")
        await broker.subscribe(group, bob.queue)
        async with running(bob):
            ready.set()
            await bob.wait_for(1)
            await anyio.to_thread.run_sync(finish.wait, WAIT)
        await broker.unsubscribe_all(bob.queue)
        results["bob"] = bob.texts

    async def second_connection() -> None:  # another loop, while the first is still running
        carol = Client("carol")
        await broker.subscribe(f"{group}-2", carol.queue)  # forwarded to the broker's loop
        async with RedisBroker(redis_server.url) as other_node, running(carol):
            await broker.publish(group, "to bob")
            await other_node.publish(f"{group}-2", "to carol")
            await carol.wait_for(1)
        await broker.unsubscribe_all(carol.queue)
        results["carol"] = carol.texts

    async def third_connection() -> None:  # the first loop is gone now: the broker moves here
        dave = Client("dave")
        await broker.subscribe(f"{group}-3", dave.queue)
        async with RedisBroker(redis_server.url) as other_node, running(dave):
            await other_node.publish(f"{group}-3", "to dave")
            await dave.wait_for(1)
        await broker.stop()
        results["dave"] = dave.texts

    thread = threading.Thread(target=anyio.run, args=(first_connection,))
    thread.start()
    try:
        assert ready.wait(WAIT)
        anyio.run(second_connection)
    finally:
        finish.set()
        thread.join(WAIT)
    anyio.run(third_connection)
    assert results == {"bob": ["to bob"], "carol": ["to carol"], "dave": ["to dave"]}
