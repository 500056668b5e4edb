"""RedisClusterBroker against a real 3-master Redis Cluster: sharded pub/sub, one shard a group."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio
from anyio.streams.buffered import BufferedByteReceiveStream
from broker_helpers import WAIT, Client, running

from tether.brokers import GroupHistory, Position, RedisClusterBroker
from tether.di.compiler import ConfigurationError
from tether.testing.redis import RedisClusterServers, RedisServer

pytestmark = pytest.mark.anyio

# Plain names, names with braces (their hash tag is a digest), and enough of
# them that every one of the three shards owns some.
GROUPS = [f"room:{i}" for i in range(24)] + ["a{b}", "{", "}x", "}{", ""]


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


@pytest.fixture
async def node_a(redis_cluster: RedisClusterServers) -> AsyncIterator[RedisClusterBroker]:
    async with RedisClusterBroker(redis_cluster.url) as broker:
        yield broker


@pytest.fixture
async def node_b(redis_cluster: RedisClusterServers) -> AsyncIterator[RedisClusterBroker]:
    async with RedisClusterBroker(redis_cluster.url) as broker:
        yield broker


async def shard_channels(node: RedisServer) -> set[bytes]:
    """The shard channels `node` has subscribers for (`PUBSUB SHARDCHANNELS`)."""
    async with redis.asyncio.Redis(host=node.host, port=node.port) as client:
        return set(await client.execute_command("PUBSUB", "SHARDCHANNELS"))


async def keyslot(cluster: RedisClusterServers, name: bytes) -> int:
    async with redis.asyncio.Redis(host="127.0.0.1", port=cluster.ports[0]) as client:
        return int(await client.execute_command("CLUSTER", "KEYSLOT", name))


def channel_of(broker: RedisClusterBroker, group: str) -> bytes:
    return broker._channel(group)


async def test_each_group_is_subscribed_only_on_the_node_that_owns_its_slot(
    redis_cluster: RedisClusterServers, node_b: RedisClusterBroker, group: str
) -> None:
    groups = [f"{group}-{name}" for name in GROUPS] + GROUPS[-5:]  # braces first, too
    clients = [Client(name) for name in groups]
    for name, client in zip(groups, clients, strict=True):
        await node_b.subscribe(name, client.queue)
    subscribed = {node.port: await shard_channels(node) for node in redis_cluster.nodes}
    owners = set()
    for name in groups:
        channel = channel_of(node_b, name)
        owner = redis_cluster.node_of_slot(await keyslot(redis_cluster, channel))
        owners.add(owner.port)
        assert [port for port, chans in subscribed.items() if channel in chans] == [owner.port]
    assert owners == set(redis_cluster.ports), "the groups should spread over all three shards"
    # One subscriber connection per node: the broker's three links, nothing more.
    assert len(node_b._links) == 3


async def test_two_brokers_exchange_messages_in_many_groups_in_order(
    node_a: RedisClusterBroker, node_b: RedisClusterBroker, group: str
) -> None:
    groups = [f"{group}-{name}" for name in GROUPS]
    on_a = {name: Client(f"{name} on A") for name in groups}
    on_b = {name: Client(f"{name} on B") for name in groups}
    for name in groups:
        await node_a.subscribe(name, on_a[name].queue)
        await node_b.subscribe(name, on_b[name].queue)
    async with running(*on_a.values(), *on_b.values()):
        for i in range(20):
            for name in groups:
                await node_a.publish(name, {"from": "A", "group": name, "seq": i})
                await node_b.publish(name, {"from": "B", "group": name, "seq": i})
        for client in [*on_a.values(), *on_b.values()]:
            await client.wait_for(40)
    for name in groups:
        for client in (on_a[name], on_b[name]):
            messages = [json.loads(text) for text in client.texts]
            assert {m["group"] for m in messages} == {name}
            for origin in ("A", "B"):
                seqs = [m["seq"] for m in messages if m["from"] == origin]
                assert seqs == list(range(20)), (client.name, origin)


async def test_concurrent_publishers_on_all_shards_are_batched_and_all_arrive(
    node_a: RedisClusterBroker, node_b: RedisClusterBroker, group: str
) -> None:
    groups = [f"{group}-{i}" for i in range(12)]
    clients = {name: Client(name, maxsize=1000) for name in groups}
    for name in groups:
        await node_b.subscribe(name, clients[name].queue)
    async with running(*clients.values()):
        async with anyio.create_task_group() as tg:
            for name in groups:

                async def publisher(name: str = name) -> None:
                    for i in range(200):
                        await node_a.publish(name, i)

                tg.start_soon(publisher)
        for name in groups:
            await clients[name].wait_for(200)
    for name in groups:
        assert clients[name].texts == [str(i) for i in range(200)]


async def test_exclude_holds_and_a_leave_stops_delivery_and_unsubscribes(
    redis_cluster: RedisClusterServers,
    node_a: RedisClusterBroker,
    node_b: RedisClusterBroker,
    group: str,
) -> None:
    alice, bob, carol = Client("alice on A"), Client("bob on B"), Client("carol on A")
    await node_a.subscribe(group, alice.queue)
    await node_a.subscribe(group, carol.queue)
    await node_b.subscribe(group, bob.queue)
    async with running(alice, bob, carol):
        await node_a.publish(group, "alice says hi", exclude=alice.queue)
        await bob.wait_for(1)
        await carol.wait_for(1)
        await node_b.unsubscribe(group, bob.queue)
        owner = redis_cluster.node_of_slot(await keyslot(redis_cluster, channel_of(node_b, group)))
        with anyio.fail_after(WAIT):
            # Still subscribed by A; B's SUNSUBSCRIBE leaves exactly one subscriber.
            while True:
                async with redis.asyncio.Redis(host=owner.host, port=owner.port) as client:
                    _, count = await client.execute_command(
                        "PUBSUB", "SHARDNUMSUB", channel_of(node_b, group)
                    )
                if count == 1:
                    break
                await anyio.sleep(0.02)
        await node_a.publish(group, "after bob left")
        await carol.wait_for(2)
        await alice.wait_for(1)
    assert alice.texts == ["after bob left"]
    assert bob.texts == ["alice says hi"]
    assert carol.texts == ["alice says hi", "after bob left"]


async def test_redis_cli_spublish_on_the_documented_channel_reaches_members(
    redis_cluster: RedisClusterServers, node_a: RedisClusterBroker, group: str
) -> None:
    alice = Client("alice")
    await node_a.subscribe(group, alice.queue)
    channel = f"tether:{{{group}}}".encode()
    owner = redis_cluster.node_of_slot(await keyslot(redis_cluster, channel))
    async with running(alice):
        async with redis.asyncio.Redis(host=owner.host, port=owner.port) as client:
            assert await client.execute_command("SPUBLISH", channel, "from outside") == 1
        await alice.wait_for(1)
    assert alice.texts == ["from outside"]


async def test_a_restarted_master_gets_its_groups_back_and_delivery_resumes(
    private_redis_cluster: RedisClusterServers,
) -> None:
    cluster = private_redis_cluster
    options = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2, "timeout": 2.0}
    groups = [f"room:{i}" for i in range(24)]
    async with (
        RedisClusterBroker(cluster.url, **options) as node_a,
        RedisClusterBroker(cluster.url, **options) as node_b,
    ):
        clients = {name: Client(name, maxsize=1000) for name in groups}
        for name in groups:
            await node_b.subscribe(name, clients[name].queue)
        victim = cluster.nodes[1]
        on_victim = [
            name
            for name in groups
            if cluster.node_of_slot(await keyslot(cluster, channel_of(node_b, name))) is victim
        ]
        assert on_victim and len(on_victim) < len(groups)
        async with running(*clients.values()):
            for name in groups:
                await node_a.publish(name, "before")
            for name in groups:
                await clients[name].wait_for(1)

            victim.stop()
            for name in groups:  # only the groups of the other shards can get through
                await node_a.publish(name, "while down")
            for name in groups:
                if name not in on_victim:
                    await clients[name].wait_for(2)

            victim.start()  # same port, its nodes.conf: it owns the same slots again
            cluster.wait_ok()
            wanted = {channel_of(node_b, name) for name in on_victim}
            with anyio.fail_after(WAIT * 2):  # B's link to it reconnects and re-subscribes
                while await shard_channels(victim) != wanted:
                    await anyio.sleep(0.05)
            for name in groups:
                await node_a.publish(name, "after")
            for name in groups:
                received = await clients[name].wait_for(3 if name not in on_victim else 2)
                assert received[-1]["text"] == "after", name
        assert node_b.reconnects >= 1
    for name in groups:
        expected = ["before", "after"] if name in on_victim else ["before", "while down", "after"]
        assert clients[name].texts == expected, name


async def test_durable_group_recovers_on_the_cluster_with_its_keys_in_one_slot(
    redis_cluster: RedisClusterServers, group: str
) -> None:
    history = GroupHistory(size=1000)
    name = f"{group}{{kept}}"  # braces in the name, too
    async with (
        RedisClusterBroker(redis_cluster.url, history=history) as node_a,
        RedisClusterBroker(redis_cluster.url, history=history) as node_b,
    ):
        bob = Client("bob on B")
        await node_b.recover(name, bob.queue, None)
        async with running(bob):
            await node_a.publish(name, "before")
            await bob.wait_for(1)
        last: Position = bob.sent[-1]["position"]
        await node_b.unsubscribe_all(bob.queue)

        for i in range(100):
            await node_a.publish(name, i)
        back = Client("bob again, on B", maxsize=500)
        result = await node_b.recover(name, back.queue, last)
        await node_a.publish(name, "live")
        async with running(back):
            await back.wait_for(101)
        assert (result.recovered, result.replayed) == (True, 100)
        data = [json.loads(m["text"])["data"] for m in back.sent]
        assert data == [*range(100), "live"]
        page = await node_a.history(name, limit=2)
        assert [entry.data for entry in page.entries] == [99, "live"]

    channel = channel_of(node_a, name)
    slots = {
        await keyslot(redis_cluster, key)
        for key in (channel, b"tether:epoch:" + channel[7:], b"tether:history:" + channel[7:])
    }
    assert len(slots) == 1


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must not contain"):
        RedisClusterBroker("redis://127.0.0.1:7000", channel_prefix="app{1}:")


# A stand-in for another app worker on the cluster: it joins every group, says
# "ready", and prints what each member received once all have everything.
WORKER = textwrap.dedent(
    """
    import json, sys
    import anyio
    from tether.brokers import OutboundQueue, RedisClusterBroker

    url, groups = sys.argv[1], sys.argv[2].split(",")
    expected, wait = int(sys.argv[3]), float(sys.argv[4])

    async def main():
        received = {group: [] for group in groups}
        done = anyio.Event()

        def sender(group):
            async def send(message):
                received[group].append(message["text"])
                if all(len(texts) == expected for texts in received.values()):
                    done.set()
            return send

        queues = [OutboundQueue(sender(group), maxsize=expected) for group in groups]
        async with RedisClusterBroker(url) as broker, anyio.create_task_group() as tg:
            for group, queue in zip(groups, queues):
                tg.start_soon(queue.run)
                await broker.subscribe(group, queue)
            print("ready", flush=True)
            with anyio.move_on_after(wait):
                await done.wait()
            for queue in queues:
                queue.close()
        print(json.dumps(received), flush=True)

    anyio.run(main)
    """
)


async def test_a_publish_reaches_another_process_in_every_group(
    redis_cluster: RedisClusterServers, group: str
) -> None:
    groups = [f"{group}-{i}" for i in range(12)]
    count = 50
    command = [
        sys.executable,
        *("-c", WORKER, redis_cluster.url, ",".join(groups), str(count), str(WAIT)),
    ]
    async with await anyio.open_process(command, stderr=subprocess.STDOUT) as worker:
        output = BufferedByteReceiveStream(worker.stdout)  # type: ignore[arg-type]
        try:
            with anyio.fail_after(WAIT):
                assert await output.receive_until(b"\n", 65536) == b"ready"
            async with RedisClusterBroker(redis_cluster.url) as broker:
                for i in range(count):
                    for name in groups:
                        await broker.publish(name, {"seq": i})
            with anyio.fail_after(WAIT * 2):
                line = await output.receive_until(b"\n", 10_000_000)
                assert await worker.wait() == 0, line
            received = json.loads(line)
            for name in groups:
                assert [json.loads(text)["seq"] for text in received[name]] == list(range(count))
        finally:
            if worker.returncode is None:
                worker.kill()
