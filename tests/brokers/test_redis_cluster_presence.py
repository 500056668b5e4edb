"""Presence in RedisClusterBroker against a real 3-master Redis Cluster.

Two brokers stand for two processes; a subprocess with a broker of its own
is the process killed with SIGKILL. Every test spreads its groups over the
three shards and ends by scanning every node for keys left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis
import redis.asyncio
from broker_helpers import WAIT, Client, running
from presence_scenarios import (
    HEARTBEAT,
    a_killed_process_members_leave_once_per_group,
    a_thousand_joins_and_leaves_in_churn_leave_nothing_behind,
    diffs,
    started,
    stop_takes_members_out_and_a_restart_brings_them_back,
    two_processes_agree_and_watchers_hear_each_change,
    worker_command,
)
from redis.crc import key_slot

from tether import Query, WebSocket, WebSocketController
from tether.brokers import RedisClusterBroker
from tether.brokers.redis_cluster_presence import ClusterPresenceKeys
from tether.testing import ServerClosed, connect
from tether.testing.redis import RedisClusterServers

pytestmark = pytest.mark.anyio

# Enough groups that each of the three shards owns some (checked where it matters),
# and names whose hash tag is a digest.
GROUPS = [f"room:{i}" for i in range(9)] + ["a{b}", ""]


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


def cluster_broker(cluster: RedisClusterServers, prefix: str) -> RedisClusterBroker:
    return RedisClusterBroker(cluster.url, channel_prefix=prefix, presence_heartbeat=HEARTBEAT)


@pytest.fixture
async def node_a(redis_cluster: RedisClusterServers, prefix: str) -> AsyncIterator:
    async with cluster_broker(redis_cluster, prefix) as broker:
        yield broker


@pytest.fixture
async def node_b(redis_cluster: RedisClusterServers, prefix: str) -> AsyncIterator:
    async with cluster_broker(redis_cluster, prefix) as broker:
        yield broker


async def keys_left(cluster: RedisClusterServers, prefix: str) -> dict[int, list[bytes]]:
    """Every key under `prefix`, by node port (`SCAN` of each node), nodes without any left out."""
    left: dict[int, list[bytes]] = {}
    for port in cluster.ports:
        async with redis.asyncio.Redis(host="127.0.0.1", port=port) as client:
            found = sorted([key async for key in client.scan_iter(match=prefix + "*", count=1000)])
        if found:
            left[port] = found
    return left


def shard_ports(cluster: RedisClusterServers, prefix: str, groups: list[str]) -> set[int]:
    """The ports of the nodes that own `groups`' presence keys."""
    owners = set()
    for group in groups:
        entries = ClusterPresenceKeys(prefix.encode(), group, b"x").entries
        owners.add(cluster.node_of_slot(key_slot(entries)).port)
    return owners


async def test_two_processes_agree_in_groups_on_every_shard_and_watchers_hear_each_change(
    node_a: RedisClusterBroker,
    node_b: RedisClusterBroker,
    redis_cluster: RedisClusterServers,
    prefix: str,
) -> None:
    assert shard_ports(redis_cluster, prefix, GROUPS) == set(redis_cluster.ports)
    await two_processes_agree_and_watchers_hear_each_change(
        node_a, node_b, GROUPS, lambda: keys_left(redis_cluster, prefix)
    )


async def test_a_thousand_joins_and_leaves_in_churn_leave_no_key_on_any_node(
    node_a: RedisClusterBroker,
    node_b: RedisClusterBroker,
    redis_cluster: RedisClusterServers,
    prefix: str,
) -> None:
    groups = [f"churn:{i}" for i in range(6)]
    assert shard_ports(redis_cluster, prefix, groups) == set(redis_cluster.ports)
    await a_thousand_joins_and_leaves_in_churn_leave_nothing_behind(
        node_a, node_b, groups, lambda: keys_left(redis_cluster, prefix)
    )


def cluster_worker(cluster: RedisClusterServers, prefix: str, groups: list[str]) -> list[str]:
    return worker_command(RedisClusterBroker, cluster.url, prefix, HEARTBEAT, groups)


async def test_a_killed_process_members_leave_every_shard_with_one_leave_diff_each(
    node_a: RedisClusterBroker,
    node_b: RedisClusterBroker,
    redis_cluster: RedisClusterServers,
    prefix: str,
) -> None:
    groups = [f"kill:{i}" for i in range(6)]
    assert shard_ports(redis_cluster, prefix, groups) == set(redis_cluster.ports)
    await a_killed_process_members_leave_once_per_group(
        node_a,
        node_b,
        cluster_worker(redis_cluster, prefix, groups),
        groups,
        HEARTBEAT,
        lambda: keys_left(redis_cluster, prefix),
    )


async def test_keys_of_a_group_whose_every_process_died_expire_without_a_sweeper(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    groups = [f"orphan:{i}" for i in range(6)]
    async with await started(cluster_worker(redis_cluster, prefix, groups)) as worker:
        assert len(await keys_left(redis_cluster, prefix)) == 3  # presence on every shard
        worker.kill()
        await worker.wait()
    # No process reads or watches these groups: Redis itself drops their keys.
    with anyio.fail_after(WAIT):
        while await keys_left(redis_cluster, prefix):
            await anyio.sleep(HEARTBEAT / 4)


async def test_a_process_whose_presence_was_lost_registers_it_again(
    node_a: RedisClusterBroker,
    node_b: RedisClusterBroker,
    redis_cluster: RedisClusterServers,
    prefix: str,
) -> None:
    groups = GROUPS[:6]
    member, watcher = Client(), Client("watcher")
    async with running(watcher):
        for group in groups:
            await node_b.subscribe(group, watcher.queue)
            await node_b.watch_presence(group, watcher.queue)
            await node_a.track(group, member.queue, "ada", {"device": "laptop"})
        await watcher.wait_for(len(groups))
        for port in redis_cluster.ports:  # as masters restarted without their data would be
            async with redis.asyncio.Redis(host="127.0.0.1", port=port) as client:
                async for key in client.scan_iter(match=prefix + "presence*"):
                    await client.delete(key)
        with anyio.fail_after(WAIT):
            for group in groups:
                while await node_b.presence(group) != {"ada": [{"device": "laptop"}]}:
                    await anyio.sleep(HEARTBEAT / 4)
        # Registered again: a leave and a join of the same entry, once per group.
        await watcher.wait_for(2 * len(groups))
        again = diffs(watcher)[len(groups) :]
        assert sorted(d["group"] for d in again) == sorted(groups)
        assert all(d["joins"] == d["leaves"] == {"ada": [{"device": "laptop"}]} for d in again)
        await node_a.untrack_all(member.queue)
        await node_b.unsubscribe_all(watcher.queue)
    assert await keys_left(redis_cluster, prefix) == {}


async def test_stop_takes_members_out_and_a_restart_brings_them_back(
    node_a: RedisClusterBroker,
    node_b: RedisClusterBroker,
    redis_cluster: RedisClusterServers,
    prefix: str,
) -> None:
    await stop_takes_members_out_and_a_restart_brings_them_back(
        node_a, node_b, lambda: keys_left(redis_cluster, prefix)
    )


async def test_a_bad_payload_is_refused_before_the_cluster_hears_of_it(
    node_a: RedisClusterBroker, redis_cluster: RedisClusterServers, prefix: str
) -> None:
    member = Client()
    with pytest.raises(TypeError, match="JSON-able"):
        await node_a.track("room", member.queue, "ada", {"when": object()})
    with pytest.raises(ValueError, match="over the limit of 1024"):
        await node_a.track("room", member.queue, "ada", "x" * 1025)
    assert await keys_left(redis_cluster, prefix) == {}


def cluster_room(broker: RedisClusterBroker, seen: list[Exception]) -> type[WebSocketController]:
    class Room(WebSocketController):
        encoding = "json"

        async def on_connect(self, websocket: WebSocket, nick: str = Query()) -> None:
            await websocket.accept()
            payload: object = {"device": "web"} if nick != "bad" else {"at": object()}
            try:
                await self.join("lobby", presence=payload, presence_key=nick, presence_events=True)
            except TypeError as exc:
                seen.append(exc)
                await websocket.close(1008)

        async def on_receive(self, data: dict) -> dict:
            if data.get("crash"):
                raise RuntimeError("boom")
            return {"present": await self.presence("lobby")}

    Room.broker = broker
    return Room


async def test_controllers_on_a_cluster_see_presence_and_leave_it_on_a_crash(
    node_a: RedisClusterBroker, redis_cluster: RedisClusterServers, prefix: str
) -> None:
    Room = cluster_room(node_a, [])
    web = [{"device": "web"}]
    async with connect(Room, "/?nick=ada", raise_app_exceptions=False) as ada:
        assert (await ada.receive_json())["joins"] == {"ada": web}
        async with connect(Room, "/?nick=bob", raise_app_exceptions=False) as bob:
            assert (await bob.receive_json())["joins"] == {"bob": web}
            assert (await ada.receive_json())["joins"] == {"bob": web}
            await bob.send_json({})
            assert await bob.receive_json() == {"present": {"ada": web, "bob": web}}
            await bob.send_json({"crash": True})
            with pytest.raises(ServerClosed) as closed:
                await bob.receive_json()
            assert closed.value.code == 1011
        assert await ada.receive_json() == {
            "event": "presence_diff",
            "group": "lobby",
            "joins": {},
            "leaves": {"bob": web},
        }
        assert await node_a.presence("lobby") == {"ada": web}
    assert await node_a.presence_count("lobby") == 0
    assert await keys_left(redis_cluster, prefix) == {}


async def test_a_bad_payload_on_a_cluster_is_refused_before_the_connection_joins(
    node_a: RedisClusterBroker, redis_cluster: RedisClusterServers, prefix: str
) -> None:
    seen: list[Exception] = []
    Room = cluster_room(node_a, seen)
    async with connect(Room, "/?nick=bad") as ws:
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
    assert closed.value.code == 1008  # the hook caught the refusal: not 1011
    assert "JSON-able" in str(seen[0])
    assert node_a.groups() == []
    for node in redis_cluster.nodes:  # no shard subscription was ever made for it
        async with redis.asyncio.Redis(host=node.host, port=node.port) as client:
            assert await client.execute_command("PUBSUB", "SHARDNUMSUB", prefix + "{lobby}") == [
                (prefix + "{lobby}").encode(),
                0,
            ]
    assert await keys_left(redis_cluster, prefix) == {}


# redis-py before 8.2 (the last release for Python 3.10 is 8.1) lets a command for a healthy
# shard fail while another master is down: its cluster client reconnects to the down node.
REDIS_PY = tuple(int(part) for part in redis.__version__.split(".")[:2])


@pytest.mark.skipif(
    REDIS_PY < (8, 2),
    reason=f"redis-py {redis.__version__} fails commands on healthy shards while a master is down",
)
async def test_a_master_down_costs_only_its_own_groups_and_they_come_back_with_it(
    private_redis_cluster: RedisClusterServers, prefix: str
) -> None:
    cluster = private_redis_cluster
    by_port: dict[int, list[str]] = {}
    for group in [f"room:{i}" for i in range(30)]:
        entries = ClusterPresenceKeys(prefix.encode(), group, b"x").entries
        by_port.setdefault(cluster.node_of_slot(key_slot(entries)).port, []).append(group)
    down = cluster.nodes[0]
    groups = [group for names in by_port.values() for group in names[:2]]
    lost = by_port[down.port][:2]
    ada, bob = Client("ada"), Client("bob")
    present = {"ada": [{"on": "a"}], "bob": [{"on": "b"}]}
    async with cluster_broker(cluster, prefix) as node_a, cluster_broker(cluster, prefix) as node_b:
        for group in groups:
            await node_a.track(group, ada.queue, "ada", {"on": "a"})
            await node_b.track(group, bob.queue, "bob", {"on": "b"})
        down.stop()  # its groups' presence goes with it (no persistence)
        # Three heartbeats on: both processes kept refreshing the groups on the
        # other shards, so no one was swept there.
        await anyio.sleep(HEARTBEAT * 3)
        for group in groups:
            if group not in lost:
                assert await node_a.presence(group) == await node_b.presence(group) == present
        down.start()
        cluster.wait_ok()
        with anyio.fail_after(WAIT * 2):  # each process registers its members there again
            for group in lost:
                while True:
                    try:
                        if await node_b.presence(group) == present:
                            break
                    except Exception:  # the node is still coming back
                        pass
                    await anyio.sleep(HEARTBEAT / 4)
        await node_a.untrack_all(ada.queue)
        await node_b.untrack_all(bob.queue)
    assert await keys_left(cluster, prefix) == {}
