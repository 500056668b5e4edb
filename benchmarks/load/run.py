"""The multi-worker load test: N uvicorn workers on one port, groups shared over Redis.

The method of the Hashrocket websocket shootout, on loopback: `uvicorn --workers N`
(1, 2, 4) serves `benchmarks.load.app` on one port, every connection joins one group,
and client processes (`benchmarks.load.client`, separate from the harness and the
server) open the connections. The harness then publishes `broadcasts` messages to the
group through its own `RedisBroker`, `interval` seconds apart; each message carries
its publish time, so each client sees the latency from publish to its receive. For
each client count in the ladder it reports deliveries/s, p50/p95/p99 latency, the
workers' memory per connection (RSS growth over the workers, from /proc) and the
Redis subscriptions left once the clients are gone (should be 0); per worker count,
the most clients for which p95 stayed under 500 ms.

    python -m benchmarks.load --workers 1 2 4 --clients 100 1000 10000

Every wait is bounded; the server and the clients are killed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.load.app import GROUP

ROOT = Path(__file__).resolve().parents[2]
P95_LIMIT_MS = 500.0


def _rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (uvicorn's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    """Block (at most `timeout` seconds) until 127.0.0.1:`port` accepts connections."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _subscriptions(url: str) -> int:
    from redis.asyncio import Redis

    async with Redis.from_url(url) as client:
        [(_, count)] = await client.pubsub_numsub(f"tether:{GROUP}")
        return int(count)


async def one_load(
    url: str,
    port: int,
    workers: list[int],
    clients: int,
    *,
    broadcasts: int,
    interval: float,
    client_processes: int,
    deadline: float,
) -> dict[str, Any]:
    """One rung of the ladder: open `clients`, broadcast, collect, close."""
    from tether.brokers import RedisBroker

    before = sum(_rss_bytes(pid) for pid in workers)
    shares = [clients // client_processes + (i < clients % client_processes)
              for i in range(client_processes)]  # fmt: skip
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.load.client",
            f"ws://127.0.0.1:{port}/",
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
        during = sum(_rss_bytes(pid) for pid in workers)
        async with RedisBroker(url) as broker:
            first = time.monotonic_ns()
            for _ in range(broadcasts):
                await broker.publish(GROUP, json.dumps({"t": time.monotonic_ns()}))
                await asyncio.sleep(interval)
        latencies: list[float] = []
        last = first
        for proc in procs:
            assert proc.stdout is not None
            report = json.loads(await asyncio.wait_for(proc.stdout.readline(), deadline + 30))
            latencies += report["latencies_ms"]
            last = max(last, report["last_ns"])
            await asyncio.wait_for(proc.wait(), 30)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    # The workers unsubscribe once their last member leaves: wait (bounded) for it.
    left = await _subscriptions(url)
    for _ in range(100):
        if left == 0:
            break
        await asyncio.sleep(0.1)
        left = await _subscriptions(url)
    latencies.sort()
    return {
        "clients": clients,
        "connected": connected,
        "spread": spread,
        "expected": connected * broadcasts,
        "received": len(latencies),
        "deliveries_per_second": len(latencies) / max((last - first) / 1e9, 1e-9),
        "p50_ms": _percentile(latencies, 0.50),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies) if latencies else 0.0,
        "bytes_per_connection": (during - before) / connected if connected else 0.0,
        "subscriptions_after": left,
    }


def run_load(
    *,
    workers: Sequence[int] = (1, 2, 4),
    clients: Sequence[int] = (100, 1_000, 10_000),
    broadcasts: int = 20,
    interval: float = 0.05,
    client_processes: int = 2,
    deadline: float = 120.0,
    log: Any = print,
) -> dict[str, Any]:
    """Every worker count against every client count; the ladder stops once p95 passes 500 ms."""
    from tether.testing.redis import RedisServer

    results: dict[str, Any] = {"broadcasts": broadcasts, "interval": interval, "rows": {}}
    with RedisServer() as redis_server:
        for count in workers:
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "benchmarks.load.app:app",
                 "--host", "127.0.0.1", "--port", str(port), "--workers", str(count),
                 "--lifespan", "off", "--log-level", "warning", "--no-access-log"],
                cwd=ROOT,
                env={**os.environ, "TETHER_LOAD_REDIS": redis_server.url,
                     "PYTHONWARNINGS": "ignore::DeprecationWarning"},
            )  # fmt: skip
            rungs: list[dict[str, Any]] = []
            try:
                wait_for_port(port, 30)
                pids: list[int] = []
                for _ in range(200):  # uvicorn forks its workers after binding
                    pids = _children(server.pid)
                    if len(pids) >= count:
                        break
                    time.sleep(0.05)
                pids = pids or [server.pid]  # --workers 1 serves from uvicorn's own process
                for many in clients:
                    rung = asyncio.run(
                        one_load(redis_server.url, port, pids, many, broadcasts=broadcasts,
                                 interval=interval, client_processes=client_processes,
                                 deadline=deadline)
                    )  # fmt: skip
                    rungs.append(rung)
                    log(
                        f"load: {count} worker(s), {many:,} clients: "
                        f"{rung['deliveries_per_second']:,.0f} deliveries/s, "
                        f"p50 {rung['p50_ms']:.1f} ms, p95 {rung['p95_ms']:.1f} ms, "
                        f"p99 {rung['p99_ms']:.1f} ms, {rung['received']:,}/"
                        f"{rung['expected']:,} received"
                    )
                    if rung["p95_ms"] > P95_LIMIT_MS:
                        break
            finally:
                server.terminate()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(timeout=5)
            under = [r["clients"] for r in rungs if r["p95_ms"] <= P95_LIMIT_MS]
            results["rows"][str(count)] = {
                "rungs": rungs,
                "most_clients_p95_under_500ms": max(under) if under else None,
            }
    return results


def markdown(result: dict[str, Any]) -> str:
    """The result as one table row per worker count and client count."""
    lines = [
        "| workers | clients | per worker | deliveries/s | p50 ms | p95 ms | p99 ms | received"
        " | bytes/conn | Redis subs after |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, row in result["rows"].items():
        for rung in row["rungs"]:
            lines.append(
                f"| {workers} | {rung['clients']:,} "
                f"| {' / '.join(str(n) for n in sorted(rung['spread'].values()))} "
                f"| {rung['deliveries_per_second']:,.0f} "
                f"| {rung['p50_ms']:.1f} | {rung['p95_ms']:.1f} | {rung['p99_ms']:.1f} "
                f"| {rung['received']:,}/{rung['expected']:,} "
                f"| {rung['bytes_per_connection']:,.0f} | {rung['subscriptions_after']} |"
            )
    lines.append("")
    for workers, row in result["rows"].items():
        lines.append(
            f"- {workers} worker(s): most clients with p95 under 500 ms: "
            f"{row['most_clients_p95_under_500ms'] or 'none'}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m benchmarks.load [--workers 1 2 4] [--clients ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = run_load(
        workers=args.workers,
        clients=args.clients,
        broadcasts=args.broadcasts,
        interval=args.interval,
        client_processes=args.client_processes,
        deadline=args.deadline,
    )
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
