"""Presence: what a join costs the members of a group, and what a present member costs Redis.

Bytes per join (`join_bytes`): a `MemoryBroker` group of `size` present
members, each also watching the group's presence; one more connection joins.
A cell is what that join sends: the diff's bytes per watcher, against what a
full snapshot (`presence()` as JSON) would cost each of them. A diff stays the
same size whatever the group's; a snapshot grows with it. Over Redis a join
is one PUBLISH whose payload (`redis_payload_bytes`) does not depend on the
group's size either; each process then sends the same diff to its watchers.

Redis memory per member (`redis_memory`): `size` members present in one group
(one key each, as in a chat room), `MEMORY USAGE` of every presence key,
divided by `size`; beside it the alternative the design considered, one sorted
set per group whose members are the entries scored by their expiry (which also
needs every entry rewritten on every heartbeat, where ours rewrites one score
per process).

Leave after SIGKILL (`leave_after_kill`): a worker process with two present
members is killed; the time until a watcher in this process gets the leave
diff, in seconds and in heartbeats (the promise: under two).

`python -m benchmarks.presence` prints a table; `--out DIR` also writes
`DIR/presence.json` and `DIR/presence.md`; into `benchmarks/results/`, it also
rewrites the tables on docs/groups.md (`benchmarks/pages.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.pages import write_results
from tether.brokers import MemoryBroker

if TYPE_CHECKING:
    from tether.brokers import RedisBroker

PAYLOAD = {"id": "u12345", "name": "Ada Lovelace", "device": "laptop"}


class Watcher:
    """A member that counts the bytes of the text frames it is handed."""

    __slots__ = ("bytes", "frames")

    def __init__(self) -> None:
        self.bytes = 0
        self.frames = 0

    def deliver(self, message: dict[str, Any]) -> None:
        self.bytes += len(message["text"].encode())
        self.frames += 1


async def join_bytes(size: int) -> dict[str, Any]:
    """What one join sends to each of a group's `size` watchers, diff against snapshot."""
    broker = MemoryBroker()
    watchers = [Watcher() for _ in range(size)]
    for n, watcher in enumerate(watchers):
        await broker.track("room", watcher, f"user{n}", {**PAYLOAD, "id": f"u{n}"})
    for watcher in watchers:
        await broker.watch_presence("room", watcher)
    await broker.track("room", Watcher(), "newcomer", {**PAYLOAD, "id": "new"})
    snapshot = len(json.dumps(await broker.presence("room"), separators=(",", ":")).encode())
    sent = sum(w.bytes for w in watchers)
    assert all(w.frames == 1 for w in watchers)
    return {
        "members": size,
        "diff_bytes_per_member": sent / size,
        "snapshot_bytes_per_member": snapshot,
        "diff_bytes_total": sent,
    }


async def redis_payload_bytes(url: str) -> int:
    """The size of the one PUBLISH a join makes, as a subscriber sees it."""
    import redis.asyncio

    from tether.brokers import RedisBroker

    async with redis.asyncio.Redis.from_url(url) as client, client.pubsub() as pubsub:
        await pubsub.subscribe("bench:room")
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        async with RedisBroker(url, channel_prefix="bench:") as broker:
            member = Watcher()
            await broker.track("room", member, "newcomer", {**PAYLOAD, "id": "new"})
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            await broker.untrack_all(member)
        return len(message["data"])


async def redis_memory(url: str, size: int) -> dict[str, Any]:
    """Bytes of Redis memory per present member, ours and a sorted set per group."""
    import redis.asyncio

    from tether.brokers import RedisBroker
    from tether.brokers.presence import encode_entry

    prefix = f"mem{size}:"
    client = redis.asyncio.Redis.from_url(url)
    async with client, RedisBroker(url, channel_prefix=prefix) as broker:
        members = [Watcher() for _ in range(size)]
        for n, member in enumerate(members):
            await broker.track("room", member, f"user{n}", {**PAYLOAD, "id": f"u{n}"})
        keys = await client.keys(prefix + "presence*")
        ours = sum([await client.memory_usage(key, samples=0) for key in keys])
        expires = time.time() + 7.5
        alternative = prefix + "alt"
        entries = [encode_entry(f"user{n}", {**PAYLOAD, "id": f"u{n}"}) for n in range(size)]
        for start in range(0, size, 1000):
            await client.zadd(alternative, {e: expires for e in entries[start : start + 1000]})
        theirs = await client.memory_usage(alternative, samples=0)
        await client.delete(alternative)
        for member in members:
            await broker.untrack_all(member)
        left = await client.keys(prefix + "*")
    return {
        "members": size,
        "bytes_per_member": ours / size,
        "zset_bytes_per_member": theirs / size,
        "keys": len(keys),
        "keys_left_after_all_left": len(left),
    }


# A worker: carol and dave present in each group (argv: broker class, url, heartbeat, groups).
WORKER = textwrap.dedent(
    """
    import sys
    import anyio
    from tether import brokers

    class Quiet:
        def deliver(self, message):
            pass

    async def main():
        kind, url, heartbeat = sys.argv[1], sys.argv[2], float(sys.argv[3])
        groups = sys.argv[4].split(",")
        broker = getattr(brokers, kind)(url, channel_prefix="kill:", presence_heartbeat=heartbeat)
        async with broker as b:
            for group in groups:
                for name in ("carol", "dave"):
                    await b.track(group, Quiet(), name, {"device": "desk"})
            print("ready", flush=True)
            await anyio.sleep(120)

    anyio.run(main)
    """
)


async def leave_after_kill(
    url: str,
    heartbeat: float,
    broker_type: type[RedisBroker] | None = None,
    groups: Sequence[str] = ("room",),
) -> dict[str, Any]:
    """Seconds from SIGKILL of a worker to the last of its groups' leave diffs here.

    `broker_type` is `RedisBroker` unless given (`RedisClusterBroker`, in
    `benchmarks.cluster_presence`); the worker runs one of the same type.
    """
    from tether.brokers import RedisBroker  # on use: redis is an optional dependency

    broker_type = broker_type or RedisBroker
    waiting = set(groups)
    left = asyncio.Event()

    class LeaveWatcher:
        def deliver(self, message: dict[str, Any]) -> None:
            diff = json.loads(message["text"])
            if diff["leaves"]:
                waiting.discard(diff["group"])
                if not waiting:
                    left.set()

    command = [
        sys.executable, "-c", WORKER, broker_type.__name__, url, str(heartbeat), ",".join(groups)
    ]  # fmt: skip
    worker = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"ready\n"
        async with broker_type(url, channel_prefix="kill:", presence_heartbeat=heartbeat) as b:
            watcher = LeaveWatcher()
            for group in groups:
                await b.subscribe(group, watcher)
                await b.watch_presence(group, watcher)
            killed = time.perf_counter()
            worker.kill()
            await asyncio.wait_for(left.wait(), timeout=heartbeat * 10)
            seconds = time.perf_counter() - killed
            await b.unsubscribe_all(watcher)
    finally:
        worker.kill()
        worker.wait()
    return {"heartbeat": heartbeat, "seconds": seconds, "heartbeats": seconds / heartbeat}


def run(sizes: Sequence[int], heartbeat: float) -> dict[str, Any]:
    """Every measurement; Redis ones skipped (with the reason) when no redis-server exists."""
    results: dict[str, Any] = {
        "settings": {"sizes": list(sizes), "heartbeat": heartbeat},
        "join": {str(n): asyncio.run(join_bytes(n)) for n in sizes},
    }
    try:
        from tether.testing.redis import RedisServer, find_redis_server

        executable = find_redis_server()
    except (FileNotFoundError, ImportError) as exc:
        results["redis"] = {"skipped": str(exc)}
        return results
    with RedisServer(executable=executable) as server:
        results["redis"] = {
            "payload_bytes": asyncio.run(redis_payload_bytes(server.url)),
            "memory": {str(n): asyncio.run(redis_memory(server.url, n)) for n in sizes},
            "kill": asyncio.run(leave_after_kill(server.url, heartbeat)),
        }
    return results


def render(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    lines = [
        "## Presence",
        "",
        "| group of | diff per member (B) | snapshot per member (B) | all diffs of one join (B) |",
        "|---:|---:|---:|---:|",
    ]
    for cell in results["join"].values():
        lines.append(
            f"| {cell['members']:,} | {cell['diff_bytes_per_member']:.0f} | "
            f"{cell['snapshot_bytes_per_member']:,} | {cell['diff_bytes_total']:,} |"
        )
    redis = results["redis"]
    if "skipped" in redis:
        lines += ["", f"Redis: skipped ({redis['skipped']})"]
        return "\n".join(lines)
    lines += [
        "",
        f"Over Redis a join is one PUBLISH of {redis['payload_bytes']} bytes, whatever the "
        "group's size.",
        "",
        "| members present in Redis | bytes per member | a sorted set per group instead |",
        "|---:|---:|---:|",
    ]
    for cell in redis["memory"].values():
        lines.append(
            f"| {cell['members']:,} | {cell['bytes_per_member']:.0f} | "
            f"{cell['zset_bytes_per_member']:.0f} |"
        )
    kill = redis["kill"]
    lines += [
        "",
        f"A SIGKILLed worker's members left after {kill['seconds']:.2f} s "
        f"({kill['heartbeats']:.2f} heartbeats of {kill['heartbeat']} s).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.presence`: measure, print, and write `--out` if given."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.presence", description=__doc__)
    parser.add_argument("--sizes", default="10,1000,10000", help="group sizes")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds, for the kill")
    parser.add_argument("--out", type=Path, default=None, help="directory for presence.json/.md")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",") if n]
    results = run(sizes, args.heartbeat)
    table = render(results)
    print(table, flush=True)
    if args.out is not None:
        write_results(args.out, "presence", results, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
