"""Presence on a Redis Cluster: what a heartbeat costs per group, against one Redis.

`RedisBroker` keeps one deadline per process, so its heartbeat is one script
whatever the number of groups; `RedisClusterBroker` keeps a deadline per
process *in each group* (a script may touch one slot only), so its heartbeat
is one script per group the process has members in or watches, pipelined:
one round trip to each node. This counts what one heartbeat sends, from the
servers' own `INFO commandstats` (reset just before it):

- `scripts`: EVALSHA calls, what crosses the network, one per group;
- `nodes`: the nodes that got any (round trips: the calls to one node are
  one pipelined write);
- `inside`: the Redis commands those scripts ran (TIME, ZADD, PTTL,
  PEXPIRE, ZRANGEBYSCORE, SCARD ...), the server's work;
- `server_us`: microseconds the servers spent in those scripts (their own
  clock, summed over nodes: a rough guide, the machine is shared).

Each of `groups` groups has one member of this process present in it, as a
connection in that many rooms would. Beside it, a read: `presence_count` is
one `HLEN` on one Redis and one script (a sweep, then `HLEN`) on a cluster.
Last, a worker with members in six groups spread over the shards is killed
with SIGKILL: the time until a watcher here has every group's leave diff.

`python -m benchmarks.cluster_presence` prints a table; `--out DIR` also
writes `DIR/cluster_presence.json` and `DIR/cluster_presence.md`; into
`benchmarks/results/`, it also rewrites the table on docs/groups.md
(`benchmarks/pages.py`).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.pages import write_results
from benchmarks.presence import leave_after_kill

PAYLOAD = {"id": "u12345", "name": "Ada Lovelace", "device": "laptop"}
SLOW_HEARTBEAT = 600.0  # the broker's own heartbeat stays out of the count
_OURS = ("cmdstat_config", "cmdstat_hello", "cmdstat_info")


class Quiet:
    """A member that drops what it is sent."""

    def deliver(self, message: dict[str, Any]) -> None:
        pass


async def _reset(ports: Sequence[int]) -> None:
    import redis.asyncio

    for port in ports:
        async with redis.asyncio.Redis(host="127.0.0.1", port=port) as client:
            await client.config_resetstat()


async def _counted(ports: Sequence[int]) -> dict[str, int]:
    """Scripts, nodes, commands inside, and server µs since `_reset`, over `ports`."""
    import redis.asyncio

    totals = {"scripts": 0, "nodes": 0, "inside": 0, "server_us": 0}
    for port in ports:
        async with redis.asyncio.Redis(host="127.0.0.1", port=port) as client:
            stats = await client.info("commandstats")
        scripts = stats.get("cmdstat_evalsha", {}).get("calls", 0)
        totals["scripts"] += scripts
        totals["nodes"] += scripts > 0
        totals["server_us"] += stats.get("cmdstat_evalsha", {}).get("usec", 0)
        totals["inside"] += sum(
            cell["calls"]
            for name, cell in stats.items()
            # Not the script itself, nor this count's own connections and calls.
            if name != "cmdstat_evalsha" and not name.startswith(_OURS)
        )
    return totals


async def heartbeat_cost(broker: Any, ports: Sequence[int], groups: int) -> dict[str, Any]:
    """What one heartbeat of `broker` costs with one member present in each of `groups`."""
    members = [Quiet() for _ in range(groups)]
    async with broker:
        for n, member in enumerate(members):
            await broker.track(f"room:{n}", member, f"user{n}", PAYLOAD)
        await broker.presence_count("room:0")
        await broker._presence.tick()  # the scripts loaded on every node
        await _reset(ports)
        await broker._presence.tick()
        beat = await _counted(ports)
        await _reset(ports)
        await broker.presence_count("room:0")
        read = await _counted(ports)
        for member in members:
            await broker.untrack_all(member)
    return {"groups": groups, **beat, "read_commands": read["scripts"] + read["inside"]}


async def cluster_leave_after_kill(url: str, heartbeat: float) -> dict[str, Any]:
    """`benchmarks.presence.leave_after_kill` on a cluster, with members in six groups."""
    from tether.brokers import RedisClusterBroker

    groups = [f"kill:{n}" for n in range(6)]
    return await leave_after_kill(url, heartbeat, RedisClusterBroker, groups)


def run(sizes: Sequence[int], heartbeat: float) -> dict[str, Any]:
    """Every measurement, on one redis-server and on a 3-master cluster."""
    from tether.brokers import RedisBroker, RedisClusterBroker
    from tether.testing.redis import RedisClusterServers, RedisServer, find_redis_server

    results: dict[str, Any] = {"settings": {"sizes": list(sizes), "heartbeat": heartbeat}}
    try:
        executable = find_redis_server((7, 0))
    except FileNotFoundError as exc:
        results["skipped"] = str(exc)
        return results
    with RedisServer(executable=executable) as server:
        results["single"] = {
            str(n): asyncio.run(
                heartbeat_cost(
                    RedisBroker(server.url, presence_heartbeat=SLOW_HEARTBEAT), [server.port], n
                )
            )
            for n in sizes
        }
    with RedisClusterServers(executable=executable) as cluster:
        results["cluster"] = {
            str(n): asyncio.run(
                heartbeat_cost(
                    RedisClusterBroker(cluster.url, presence_heartbeat=SLOW_HEARTBEAT),
                    cluster.ports,
                    n,
                )
            )
            for n in sizes
        }
        results["kill"] = asyncio.run(cluster_leave_after_kill(cluster.url, heartbeat))
    return results


def render(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    lines = ["## Presence on a Redis Cluster", ""]
    if "skipped" in results:
        return "\n".join([*lines, f"Skipped: {results['skipped']}"])
    lines += [
        "One heartbeat of one process with a member present in each of N groups "
        "(3 masters; one redis-server for `RedisBroker`):",
        "",
        "| N groups | broker | scripts sent | nodes (round trips) | commands inside | "
        "server µs | a `presence_count` (commands) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in results["settings"]["sizes"]:
        for name, kind in (("RedisBroker", "single"), ("RedisClusterBroker", "cluster")):
            cell = results[kind][str(n)]
            lines.append(
                f"| {n:,} | {name} | {cell['scripts']:,} | {cell['nodes']} | "
                f"{cell['inside']:,} | {cell['server_us']:,} | {cell['read_commands']} |"
            )
    kill = results["kill"]
    lines += [
        "",
        f"A SIGKILLed worker's members in six groups on three shards had all left after "
        f"{kill['seconds']:.2f} s ({kill['heartbeats']:.2f} heartbeats of {kill['heartbeat']} s).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.cluster_presence`: measure, print, write `--out` if given."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_presence", description=__doc__
    )
    parser.add_argument("--sizes", default="1,10,100,1000", help="numbers of groups")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="seconds, for the kill")
    parser.add_argument("--out", type=Path, default=None, help="directory for the results")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",") if n]
    results = run(sizes, args.heartbeat)
    table = render(results)
    print(table, flush=True)
    if args.out is not None:
        write_results(args.out, "cluster_presence", results, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
