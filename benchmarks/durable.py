"""Durable groups: what history costs a publish, and how long a recovery takes.

Publish cost (`publish_cost`, `redis_publish_cost`): the same publishes to a
group with history and to one without, in alternating batches within one run,
so both see the same machine; a cell is the median time per publish, and the
ratio is history-on over history-off.

- In process: a `MemoryBroker` with `members` members, each an `OutboundQueue`
  drained by its `run()` into a counting `send` (the eager send makes the
  fan-out happen inside `publish`); a publish is timed until it returns. The
  group's history ring is full before timing starts, as in a group that has
  run a while (`--cold`: from a fresh ring, see `publish_cost`).
- Over Redis: a `RedisBroker` publishing to a group with one member in another
  Python process, on a throwaway `redis-server`; a publish is timed until it
  returns (one round trip either way: PUBLISH, or the history script that
  appends to the stream and PUBLISHes).

Recovery (`recovery_time`): `missed` messages are published to a group with
history while a member is away; then the time from `recover(group, member,
since)` to the member's `send` receiving the last of them.

`python -m benchmarks.durable` runs it all and prints a table;
`--out DIR` also writes `DIR/durable.json` and `DIR/durable.md`; into
`benchmarks/results/`, it also rewrites the table on docs/benchmarks.md
(`benchmarks/pages.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.pages import write_results
from tether.brokers import GroupHistory, MemoryBroker, OutboundQueue, Position

MESSAGE = {"type": "chat", "user": "ann", "text": "hello, room", "seq": 1}
KEPT = "kept"  # the group with history
PLAIN = "plain"  # the group without
HISTORY = {KEPT: GroupHistory(size=10_000, ttl=600)}


class Counter:
    """A member's socket: counts what it is sent, and wakes a waiter at a target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached: asyncio.Event = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.count += 1
        if self.count == self.target:
            self.reached.set()

    def expect(self, total: int) -> asyncio.Event:
        self.target = total
        self.reached = asyncio.Event()
        if self.count >= total:
            self.reached.set()
        return self.reached


async def _members(count: int, maxsize: int = 1024) -> list[tuple[Counter, OutboundQueue]]:
    members = []
    for _ in range(count):
        counter = Counter()
        members.append((counter, OutboundQueue(counter.send, maxsize=maxsize)))
    return members


async def publish_cost(
    members: int, publishes: int, rounds: int, *, cold: bool = False
) -> dict[str, Any]:
    """Seconds per in-process publish to `members` members, history on and off.

    The history is first filled to its size, untimed and before the members
    join, so the publishes timed are those of a group that has been running
    a while: its ring full, each publish replacing the oldest message. With
    `cold`, timing starts at a fresh ring instead, and the publishes also pay,
    once per group, for the fresh memory the ring keeps as it first fills.
    """
    broker = MemoryBroker(history=HISTORY)
    queues = await _members(members)
    times: dict[str, list[float]] = {KEPT: [], PLAIN: []}
    if not cold:
        for _ in range(HISTORY[KEPT].size):
            await broker.publish(KEPT, MESSAGE)
    async with asyncio.TaskGroup() as tg:
        for _, queue in queues:
            tg.create_task(queue.run())
        await asyncio.sleep(0)
        for _, queue in queues:
            await broker.subscribe(PLAIN, queue)
            await broker.recover(KEPT, queue, None)
        for round_ in range(rounds):
            for group in _order(round_):
                start = time.perf_counter()
                for _ in range(publishes):
                    await broker.publish(group, MESSAGE)
                elapsed = time.perf_counter() - start
                times[group].append(elapsed / publishes)
                await asyncio.sleep(0)  # let any suspended send finish
        for _, queue in queues:
            queue.close()
    return _cell(times)


# The remote member: another Python process subscribed to both groups, draining them.
SUBSCRIBER = """
import asyncio, sys
from tether.brokers import GroupHistory, OutboundQueue, RedisBroker

async def main(url):
    async def send(message):
        pass

    queue = OutboundQueue(send, maxsize=100_000)
    history = {"kept": GroupHistory(size=10_000, ttl=600)}
    async with RedisBroker(url, history=history) as broker, asyncio.TaskGroup() as tg:
        tg.create_task(queue.run())
        await broker.subscribe("plain", queue)
        await broker.recover("kept", queue, None)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        queue.close()

asyncio.run(main(sys.argv[1]))
"""


async def redis_publish_cost(url: str, publishes: int, rounds: int) -> dict[str, Any]:
    """Seconds per RedisBroker publish (one member in another process), history on and off."""
    from tether.brokers import RedisBroker

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBSCRIBER, url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        ready = await asyncio.wait_for(process.stdout.readline(), 60)
        assert ready == b"ready\n", ready
        times: dict[str, list[float]] = {KEPT: [], PLAIN: []}
        async with RedisBroker(url, history=HISTORY) as publisher:
            for round_ in range(rounds):
                for group in _order(round_):
                    start = time.perf_counter()
                    for _ in range(publishes):
                        await publisher.publish(group, MESSAGE)
                    times[group].append((time.perf_counter() - start) / publishes)
    finally:
        process.stdin.close()
        await asyncio.wait_for(process.wait(), 60)
    return _cell(times)


async def recovery_time(missed: int, url: str | None = None) -> dict[str, Any]:
    """Seconds from `recover(since=)` to the last of `missed` messages reaching the member."""
    if url is None:
        broker: Any = MemoryBroker(history=HISTORY)
        reader = broker
    else:
        from tether.brokers import RedisBroker

        broker = RedisBroker(url, history=HISTORY)
        reader = RedisBroker(url, history=HISTORY)
        await broker.start()
        await reader.start()
    try:
        page = await broker.history(KEPT)
        since: Position = page.position
        for n in range(missed):
            await broker.publish(KEPT, {**MESSAGE, "seq": n})
        [(counter, queue)] = await _members(1, maxsize=missed + 10)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(queue.run())
            await asyncio.sleep(0)
            done = counter.expect(missed)
            start = time.perf_counter()
            result = await reader.recover(KEPT, queue, since)
            await asyncio.wait_for(done.wait(), 60)
            elapsed = time.perf_counter() - start
            queue.close()
        assert result.recovered and result.replayed == missed, result
    finally:
        if url is not None:
            await broker.stop()
            await reader.stop()
    return {"missed": missed, "seconds": elapsed}


def _order(round_: int) -> tuple[str, str]:
    """Batches alternate, and so does which comes first: both see the same machine."""
    return (PLAIN, KEPT) if round_ % 2 == 0 else (KEPT, PLAIN)


def _cell(times: dict[str, list[float]]) -> dict[str, Any]:
    on, off = statistics.median(times[KEPT]), statistics.median(times[PLAIN])
    return {"history_on": on, "history_off": off, "ratio": on / off, "runs": times}


def run(
    members: Sequence[int],
    publishes: int,
    rounds: int,
    redis_publishes: int,
    missed: int,
    cold: bool = False,
) -> dict[str, Any]:
    """Every measurement; Redis ones skipped (with the reason) when no redis-server exists."""
    results: dict[str, Any] = {
        "settings": {
            "members": list(members),
            "publishes": publishes,
            "rounds": rounds,
            "redis_publishes": redis_publishes,
            "missed": missed,
            "cold": cold,
        },
        "publish": {
            str(n): asyncio.run(publish_cost(n, publishes, rounds, cold=cold)) for n in members
        },
        "recovery": {"memory": asyncio.run(recovery_time(missed))},
    }
    try:
        from tether.testing.redis import RedisServer, find_redis_server

        executable = find_redis_server()
    except (FileNotFoundError, ImportError) as exc:
        results["redis"] = {"skipped": str(exc)}
        return results
    with RedisServer(executable=executable) as server:
        results["redis"] = asyncio.run(redis_publish_cost(server.url, redis_publishes, rounds))
        results["recovery"]["redis"] = asyncio.run(recovery_time(missed, server.url))
    return results


def render(results: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = [
        "## Durable groups",
        "",
        "| publish to | history off (µs) | history on (µs) | on / off |",
        "|---|---:|---:|---:|",
    ]
    for members, cell in results["publish"].items():
        lines.append(
            f"| {members} member(s), in process | {cell['history_off'] * 1e6:.2f} | "
            f"{cell['history_on'] * 1e6:.2f} | {cell['ratio']:.2f}x |"
        )
    redis = results.get("redis", {})
    if "skipped" in redis:
        lines.append(f"| Redis: skipped ({redis['skipped']}) | | | |")
    else:
        lines.append(
            f"| 1 remote member, over Redis | {redis['history_off'] * 1e6:.1f} | "
            f"{redis['history_on'] * 1e6:.1f} | {redis['ratio']:.2f}x |"
        )
    lines += [
        "",
        "| recovery of missed messages | messages | ms to the last one |",
        "|---|---:|---:|",
    ]
    for where, cell in results["recovery"].items():
        lines.append(f"| {where} | {cell['missed']} | {cell['seconds'] * 1e3:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.durable`: measure, print, and write `--out` if given."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.durable", description=__doc__)
    parser.add_argument("--members", default="1,100,1000", help="group sizes in process")
    parser.add_argument("--publishes", type=int, default=1000, help="publishes per batch")
    parser.add_argument("--rounds", type=int, default=11, help="alternating batches of each")
    parser.add_argument("--redis-publishes", type=int, default=300, help="per batch, Redis")
    parser.add_argument("--missed", type=int, default=1000, help="messages to recover")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="time from a fresh history ring, not a full one",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for durable.json/.md")
    args = parser.parse_args(argv)
    members = [int(n) for n in args.members.split(",") if n]
    results = run(
        members, args.publishes, args.rounds, args.redis_publishes, args.missed, args.cold
    )
    table = render(results)
    print(table, flush=True)
    if args.out is not None:
        write_results(args.out, "durable", results, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
