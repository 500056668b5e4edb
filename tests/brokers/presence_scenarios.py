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
