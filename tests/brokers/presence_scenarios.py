"""Presence scenarios that RedisBroker and RedisClusterBroker must pass alike.

Each test file calls these with its own two brokers (two processes) and its
own way of listing the keys left in Redis; the scenarios assert what a
watcher hears and that nothing is left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from broker_helpers import WAIT, Client, running

from tether.brokers import RedisBroker

HEARTBEAT = 1.0  # a loaded machine may stall a live process for half a second
KeysLeft = Callable[[], Awaitable[Any]]  # the keys under the test's prefix; falsy when none


def diffs(client: Client) -> list[dict]:
    """The presence diffs `client` received, decoded."""
    return [json.loads(text) for text in client.texts]


# A worker process: carol and dave present in each group, says "ready", waits to be killed.
WORKER = textwrap.dedent(
    """
    import sys
    import anyio
    from tether import brokers

    kind, url, prefix, heartbeat = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    groups = sys.argv[5].split(",")

    async def send(message):
        pass

    async def main():
        broker = getattr(brokers, kind)(url, channel_prefix=prefix, presence_heartbeat=heartbeat)
        async with broker:
            for group in groups:
                for name in ("carol", "dave"):
                    queue = brokers.OutboundQueue(send)
                    await broker.subscribe(group, queue)
                    await broker.track(group, queue, name, {"device": "desk"})
            print("ready", flush=True)
            await anyio.sleep(60)

    anyio.run(main)
    """
)


def worker_command(
    broker_type: type[RedisBroker], url: str, prefix: str, heartbeat: float, groups: Sequence[str]
) -> list[str]:
    """The command line of a `WORKER` process with a `broker_type` of its own."""
    return [
        sys.executable,
        "-c",
        WORKER,
        broker_type.__name__,
        url,
        prefix,
        str(heartbeat),
        ",".join(groups),
    ]


async def started(command: list[str]) -> Process:
    """Start a `WORKER` and wait (bounded) until its members are present."""
    worker = await anyio.open_process(command, stderr=subprocess.STDOUT)
    output = BufferedByteReceiveStream(worker.stdout)  # type: ignore[arg-type]
    try:
        with anyio.fail_after(WAIT):
            assert await output.receive_until(b"\n", 65536) == b"ready"
    except BaseException:
        worker.kill()
        await worker.aclose()
        raise
    return worker


async def a_killed_process_members_leave_once_per_group(
    node_a: RedisBroker,
    node_b: RedisBroker,
    command: list[str],
    groups: Sequence[str],
    heartbeat: float,
    keys_left: KeysLeft,
) -> None:
    """A worker is SIGKILLed: watchers on both brokers hear one leave diff per group."""
    watch_a, watch_b = Client("wa"), Client("wb")
    async with running(watch_a, watch_b), await started(command) as worker:
        for group in groups:
            for node, watcher in ((node_a, watch_a), (node_b, watch_b)):
                await node.subscribe(group, watcher.queue)
                await node.watch_presence(group, watcher.queue)
            assert await node_a.presence_count(group) == 2
        worker.kill()  # SIGKILL: no leave of its own, no goodbye to Redis
        await worker.wait()
        await watch_a.wait_for(len(groups))
        await watch_b.wait_for(len(groups))
        for group in groups:
            assert await node_b.presence(group) == {}
        # Both processes sweep every group; each leave is announced once, by whichever was first.
        await anyio.sleep(heartbeat * 2)
        gone = {"carol": [{"device": "desk"}], "dave": [{"device": "desk"}]}
        for watcher in (watch_a, watch_b):
            assert sorted(d["group"] for d in diffs(watcher)) == sorted(groups)
            assert all(d["joins"] == {} and d["leaves"] == gone for d in diffs(watcher))
        await node_a.unsubscribe_all(watch_a.queue)
        await node_b.unsubscribe_all(watch_b.queue)
    assert not await keys_left()


async def stop_takes_members_out_and_a_restart_brings_them_back(
    node_a: RedisBroker, node_b: RedisBroker, keys_left: KeysLeft
) -> None:
    """`stop()` announces the leave and clears Redis; the next use registers the members again."""
    member, watcher = Client(), Client("watcher")
    async with running(watcher):
        await node_b.subscribe("room", watcher.queue)
        await node_b.watch_presence("room", watcher.queue)
        await node_a.track("room", member.queue, "ada", {"device": "laptop"})
        await watcher.wait_for(1)
        await node_a.stop()  # as at an app's shutdown, before its connections ended
        await watcher.wait_for(2)
        assert json.loads(watcher.texts[1])["leaves"] == {"ada": [{"device": "laptop"}]}
        assert await node_b.presence("room") == {}
        assert not await keys_left()
        await node_a.start()  # the broker is used again: its members are registered again
        await watcher.wait_for(3)
        # Registered again: a leave and a join of the same entry, so a client that
        # applies leaves first ends with ada once, whether or not it heard her leave.
        again = json.loads(watcher.texts[2])
        assert again["leaves"] == again["joins"] == {"ada": [{"device": "laptop"}]}
        assert await node_b.presence("room") == {"ada": [{"device": "laptop"}]}
        await node_a.untrack_all(member.queue)
        await node_b.unsubscribe_all(watcher.queue)
    assert not await keys_left()


async def two_processes_agree_and_watchers_hear_each_change(
    node_a: RedisBroker, node_b: RedisBroker, groups: Sequence[str], keys_left: KeysLeft
) -> None:
    """ada joins on one broker, bob on the other, in each group; bob leaves; ada leaves."""
    ada, bob, watch_a, watch_b = Client("ada"), Client("bob"), Client("wa"), Client("wb")
    laptop, phone = {"ada": [{"device": "laptop"}]}, {"bob": [{"device": "phone"}]}
    async with running(ada, bob, watch_a, watch_b):
        for group in groups:
            for node, watcher in ((node_a, watch_a), (node_b, watch_b)):
                await node.subscribe(group, watcher.queue)
                await node.watch_presence(group, watcher.queue)
            await node_a.subscribe(group, ada.queue)
            await node_a.track(group, ada.queue, "ada", {"device": "laptop"})
            await node_b.subscribe(group, bob.queue)
            await node_b.track(group, bob.queue, "bob", {"device": "phone"})
        for group in groups:
            # Each process reads from Redis: no wait, no heartbeat needed.
            assert await node_a.presence(group) == await node_b.presence(group) == laptop | phone
            assert await node_a.presence_count(group) == await node_b.presence_count(group) == 2

        await node_b.unsubscribe_all(bob.queue)
        await node_b.untrack_all(bob.queue)
        for watcher in (watch_a, watch_b):
            await watcher.wait_for(3 * len(groups))
            for group in groups:
                assert [d for d in diffs(watcher) if d["group"] == group] == [
                    {"event": "presence_diff", "group": group, "joins": joins, "leaves": leaves}
                    for joins, leaves in [(laptop, {}), (phone, {}), ({}, phone)]
                ]
        for group in groups:
            assert await node_a.presence(group) == await node_b.presence(group) == laptop
        assert ada.texts == [] and bob.texts == []  # diffs only to those who asked
        await node_a.untrack_all(ada.queue)
        await node_a.unsubscribe_all(ada.queue)
        for group in groups:
            assert await node_b.presence_count(group) == 0
        await node_a.unsubscribe_all(watch_a.queue)
        await node_b.unsubscribe_all(watch_b.queue)
    assert not await keys_left()


async def a_thousand_joins_and_leaves_in_churn_leave_nothing_behind(
    node_a: RedisBroker, node_b: RedisBroker, groups: Sequence[str], keys_left: KeysLeft
) -> None:
    """500 members join and leave on each broker, round the groups, twelve present at a time."""
    members = [Client(f"c{n}") for n in range(1000)]
    peak = 0

    async def churn(node: RedisBroker, share: list[Client]) -> None:
        nonlocal peak
        for n, member in enumerate(share):
            group = groups[n % len(groups)]
            await node.track(group, member.queue, f"user{n % 37}", {"n": n})
            if n % 3 == 0:
                peak = max(peak, await node.presence_count(group))
            if n >= 12:  # keep twelve present per process, the oldest leaving
                await node.untrack(groups[(n - 12) % len(groups)], share[n - 12].queue)
        for member in share[-12:]:
            await node.untrack_all(member.queue)

    with anyio.fail_after(WAIT * 6):
        async with anyio.create_task_group() as tg:
            tg.start_soon(churn, node_a, members[:500])
            tg.start_soon(churn, node_b, members[500:])
    assert peak > 0
    for group in groups:
        assert await node_a.presence_count(group) == 0
        assert await node_b.presence(group) == {}
    assert not await keys_left()
