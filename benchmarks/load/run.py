"""The multi-worker load test: N uvicorn workers on one port, groups shared over Redis.

The method of the Hashrocket websocket shootout, on loopback: `uvicorn --workers N`
(1, 2, 4) serves `benchmarks.load.app` on one port, every connection joins one group,
and client processes (`benchmarks.load.client`, separate from the harness and the
server, about 2,500 connections each) open the connections. The harness then
publishes `broadcasts` messages to the group through its own `RedisBroker`,
`interval` seconds apart; each carries its publish time and sequence number, so
each client sees the latency from publish to its receive, and the order. For each
client count it reports deliveries/s, p50/p95/p99 latency, the workers' memory
per connection (RSS growth, from /proc) and the leak check (`benchmarks.load.leaks`):
each worker's tasks, members, sessions, controllers, Redis connections and
subscriptions back to the baseline taken before the clients came, RSS back within
a bound. With `--kill-one`, one worker is killed with SIGKILL halfway through the
broadcasts; every client of the other workers must still receive every broadcast
in order, and the leak check covers the survivors.

    python -m benchmarks.load --workers 1 2 4 --clients 1000 10000
    python -m benchmarks.load --workers 2 4 --clients 10000 --kill-one
    python -m benchmarks.load --workers 1 2 4 --find-p95 500

`--find-p95 MS` searches, per worker count, for the most clients whose p95 stays
under MS: it tries `--find-high` and `--find-low`, then bisects between them, at
most `--find-steps` more runs, to `--find-resolution` clients.

Every wait is bounded; the server and the clients are killed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.load.app import GROUP
from benchmarks.load.leaks import back_to_baseline, compare, settled_baseline, snapshot
from benchmarks.load.report import markdown
from benchmarks.load.server import ROOT, LoadServer, free_port, wait_for_port

__all__ = ["ROOT", "free_port", "main", "markdown", "one_load", "run_load", "wait_for_port"]

P95_LIMIT_MS = 500.0
CLIENTS_PER_PROCESS = 2_500


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def raise_open_files_limit() -> int:
    """Raise the open-files limit to the hard limit (uvicorn's workers inherit it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _victim(spread: dict[str, int], pids: list[int]) -> int:
    """The worker to kill: the one holding the fewest connections, but some if any does."""
    holding = [pid for pid in pids if spread.get(str(pid), 0)]
    return min(holding or pids, key=lambda pid: spread.get(str(pid), 0))


async def one_load(
    server: LoadServer,
    clients: int,
    *,
    broadcasts: int,
    interval: float,
    client_processes: int | None = None,
    deadline: float = 120.0,
    kill_one: bool = False,
) -> dict[str, Any]:
    """One run: baseline, open `clients`, broadcast (killing a worker halfway if asked),
    collect, let the clients leave, and check every surviving worker is back to baseline."""
    from tether.brokers import RedisBroker

    url, pids = server.redis_url, server.pids
    baseline = await settled_baseline(url, server.counts_dir, pids)
    processes = client_processes or max(2, math.ceil(clients / CLIENTS_PER_PROCESS))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    command = [sys.executable, "-m", "benchmarks.load.client", server.url]
    procs = [
        await asyncio.create_subprocess_exec(
            *command,
            str(share),
            str(broadcasts),
            str(deadline),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            limit=1 << 26,  # the report is one long JSON line
        )
        for share in shares
        if share
    ]
    victim = None
    try:
        spread: dict[str, int] = {}
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), deadline)
            if not line.startswith(b"ready"):
                raise RuntimeError(f"a client process said {line[:200]!r}")
            for pid, count in json.loads(line[6:]).items():
                spread[pid] = spread.get(pid, 0) + count
        connected = sum(spread.values())
        peak = await snapshot(url, server.counts_dir, pids)
        async with RedisBroker(url, client_name="tether-load-harness") as broker:
            first = time.monotonic_ns()
            for seq in range(broadcasts):
                if kill_one and seq == broadcasts // 2 and len(pids) > 1:
                    victim = _victim(spread, pids)
                    os.kill(victim, signal.SIGKILL)
                body = json.dumps({"t": time.monotonic_ns(), "seq": seq})
                await broker.publish(GROUP, body)
                await asyncio.sleep(interval)
        latencies: list[float] = []
        workers: dict[str, dict[str, int]] = {}
        last, failed = first, 0
        for proc in procs:
            assert proc.stdout is not None
            report = json.loads(await asyncio.wait_for(proc.stdout.readline(), deadline + 30))
            latencies += report["latencies_ms"]
            last = max(last, report["last_ns"])
            failed += report["failed"]
            for pid, counts in report["workers"].items():
                mine = workers.setdefault(pid, {})
                for key, value in counts.items():
                    mine[key] = mine.get(key, 0) + value
            await asyncio.wait_for(proc.wait(), 30)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    survivors = [pid for pid in pids if pid != victim]
    after = await back_to_baseline(url, server.counts_dir, baseline, survivors)
    latencies.sort()
    return {
        "workers": len(pids),
        "clients": clients,
        "client_processes": len(procs),
        "connected": connected,
        "failed": failed,
        "spread": spread,
        "by_worker": workers,
        "killed": victim,
        "expected": connected * broadcasts,
        "received": len(latencies),
        "deliveries_per_second": len(latencies) / max((last - first) / 1e9, 1e-9),
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies) if latencies else 0.0,
        "bytes_per_connection": sum(
            peak["workers"][pid]["rss"] - baseline["workers"][pid]["rss"] for pid in pids
        )
        / max(connected, 1),
        "subscriptions_after": after["numsub"],
        # Other work on the machine moves every figure: the 1-minute load average says how much.
        "load_average": os.getloadavg()[0],
        "leaks": compare(baseline, peak, after),
    }


def _summary(rung: dict[str, Any]) -> str:
    killed = f", killed {rung['killed']}" if rung["killed"] else ""
    return (
        f"load: {rung['workers']} worker(s), {rung['clients']:,} clients{killed}: "
        f"{rung['deliveries_per_second']:,.0f} deliveries/s, p50 {rung['p50_ms']:.1f} ms, "
        f"p95 {rung['p95_ms']:.1f} ms, p99 {rung['p99_ms']:.1f} ms, "
        f"{rung['received']:,}/{rung['expected']:,} received, "
        f"leak check {'ok' if rung['leaks']['ok'] else 'FAILED'}, "
        f"load average {rung['load_average']:.1f}"
    )


def find_p95(
    probe: Callable[[int], dict[str, Any]],
    *,
    limit_ms: float,
    low: int,
    high: int,
    steps: int,
    resolution: int,
) -> tuple[int | None, list[dict[str, Any]]]:
    """The most clients (to `resolution`) whose p95 stays under `limit_ms`, and every run.

    Tries `high` (enough: done), then `low` (too many already: None), then bisects,
    at most `steps` more runs. Assumes p95 grows with the client count; on a noisy
    machine a run can contradict that, which the runs returned show.
    """
    runs = [probe(high)]
    if runs[-1]["p95_ms"] <= limit_ms:
        return high, runs
    runs.append(probe(low))
    if runs[-1]["p95_ms"] > limit_ms:
        return None, runs
    for _ in range(steps):
        if high - low <= resolution:
            break
        middle = max(low + resolution, min(high - resolution, (low + high) // 2))
        middle = round(middle / resolution) * resolution
        runs.append(probe(middle))
        if runs[-1]["p95_ms"] <= limit_ms:
            low = middle
        else:
            high = middle
    return low, runs


def run_load(
    *,
    workers: Sequence[int] = (1, 2, 4),
    clients: Sequence[int] = (1_000, 10_000),
    broadcasts: int = 10,
    interval: float = 0.1,
    client_processes: int | None = None,
    deadline: float = 180.0,
    kill_one: bool = False,
    find_p95_ms: float | None = None,
    find_low: int = 500,
    find_high: int = 10_000,
    find_steps: int = 5,
    find_resolution: int = 250,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Every worker count against every client count, or the p95 search per worker count."""
    from tether.testing.redis import RedisServer

    raise_open_files_limit()
    results: dict[str, Any] = {
        "broadcasts": broadcasts, "interval": interval, "kill_one": kill_one,
        "p95_limit_ms": P95_LIMIT_MS if find_p95_ms is None else find_p95_ms, "rows": {},
    }  # fmt: skip
    with RedisServer() as redis_server:
        for count in workers:
            with LoadServer(count, redis_server.url) as server:

                def probe(many: int, server: LoadServer = server) -> dict[str, Any]:
                    server.refresh()
                    rung = asyncio.run(
                        one_load(server, many, broadcasts=broadcasts, interval=interval,
                                 client_processes=client_processes, deadline=deadline,
                                 kill_one=kill_one)
                    )  # fmt: skip
                    log(_summary(rung))
                    return rung

                if find_p95_ms is None:
                    rungs = [probe(many) for many in clients]
                    under = [r["clients"] for r in rungs if r["p95_ms"] <= P95_LIMIT_MS]
                    most = max(under) if under else None
                else:
                    most, rungs = find_p95(probe, limit_ms=find_p95_ms, low=find_low,
                                           high=find_high, steps=find_steps,
                                           resolution=find_resolution)  # fmt: skip
            results["rows"][str(count)] = {"rungs": rungs, "most_clients_p95_under_limit": most}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m benchmarks.load [--workers 1 2 4] [--clients ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--broadcasts", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument(
        "--client-processes",
        type=int,
        default=None,
        help=f"default: one per {CLIENTS_PER_PROCESS:,} clients, at least 2",
    )
    parser.add_argument("--deadline", type=float, default=180.0)
    parser.add_argument("--kill-one", action="store_true",
                        help="SIGKILL one worker halfway through the broadcasts")  # fmt: skip
    parser.add_argument("--find-p95", type=float, metavar="MS",
                        help="search for the most clients whose p95 stays under MS")  # fmt: skip
    parser.add_argument("--find-low", type=int, default=500)
    parser.add_argument("--find-high", type=int, default=10_000)
    parser.add_argument("--find-steps", type=int, default=5)
    parser.add_argument("--find-resolution", type=int, default=250)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = run_load(
        workers=args.workers,
        clients=args.clients,
        broadcasts=args.broadcasts,
        interval=args.interval,
        client_processes=args.client_processes,
        deadline=args.deadline,
        kill_one=args.kill_one,
        find_p95_ms=args.find_p95,
        find_low=args.find_low,
        find_high=args.find_high,
        find_steps=args.find_steps,
        find_resolution=args.find_resolution,
    )
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
