"""One load-test client process: `count` WebSocket connections that time every broadcast.

    python -m benchmarks.load.client URL COUNT BROADCASTS DEADLINE

Prints `ready {pid: connections}` once every connection has joined (or failed),
then, once every connection has received `BROADCASTS` messages or was closed by
its server, or `DEADLINE` seconds passed, one JSON line: the latencies (publish
to receive, in ms), how many arrived, the last arrival, how many connections
failed to open, and per worker: its connections, how many received every
broadcast in order, how many the server dropped and how many of those had
received an in-order prefix before the drop.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

OPEN_AT_ONCE = 100  # handshakes in flight at a time
STEP_TIMEOUT = 60.0  # one handshake, one join


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to its hard limit; return the new limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Outcome:
    """What one connection saw: its worker, the sequence numbers in arrival order, a drop."""

    __slots__ = ("dropped", "seqs", "worker")

    def __init__(self) -> None:
        self.worker = ""
        self.seqs: list[int] = []
        self.dropped = False


def _by_worker(outcomes: list[Outcome], broadcasts: int) -> dict[str, dict[str, int]]:
    summary: dict[str, Counter[str]] = {}
    for outcome in outcomes:
        if not outcome.worker:
            continue
        counts = summary.setdefault(outcome.worker, Counter())
        in_order = outcome.seqs == list(range(len(outcome.seqs)))
        counts["connections"] += 1
        counts["complete"] += in_order and len(outcome.seqs) == broadcasts
        counts["dropped"] += outcome.dropped
        counts["dropped_after_in_order_prefix"] += outcome.dropped and in_order
    return {pid: dict(counts) for pid, counts in summary.items()}


async def main(url: str, count: int, broadcasts: int, deadline: float) -> None:
    """Open, report ready, collect, report the figures; every wait is bounded."""
    raise_open_files_limit()
    latencies: list[float] = []
    last = 0
    failed = 0
    outcomes = [Outcome() for _ in range(count)]
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    start = asyncio.Event()
    settled = 0  # connections that joined or failed to

    async def one(outcome: Outcome) -> None:
        nonlocal last, failed, settled
        try:
            async with gate:
                ws = await connect(url, open_timeout=STEP_TIMEOUT, max_queue=None)
                joined = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        except (OSError, asyncio.TimeoutError, ConnectionClosed):
            failed += 1
            settled += 1
            return
        outcome.worker = str(joined).split()[1]
        settled += 1
        try:
            await start.wait()
            for _ in range(broadcasts):
                message = await ws.recv()
                now = time.monotonic_ns()
                sent = json.loads(message)
                latencies.append((now - sent["t"]) / 1e6)
                outcome.seqs.append(sent["seq"])
                last = max(last, now)
        except ConnectionClosed:
            outcome.dropped = True  # its worker went away
        finally:
            await ws.close()

    tasks = [asyncio.create_task(one(outcome)) for outcome in outcomes]
    opened = asyncio.gather(*tasks, return_exceptions=True)
    give_up = time.monotonic() + deadline
    while settled < count and not opened.done() and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    workers = Counter(outcome.worker for outcome in outcomes if outcome.worker)
    print("ready", json.dumps(workers), flush=True)
    start.set()
    try:
        await asyncio.wait_for(asyncio.shield(opened), max(give_up - time.monotonic(), 1.0))
    except asyncio.TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(opened, 30)
    report: dict[str, Any] = {
        "latencies_ms": latencies,
        "received": len(latencies),
        "last_ns": last,
        "failed": failed,
        "workers": _by_worker(outcomes, broadcasts),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    url, count, broadcasts, deadline = sys.argv[1:5]
    asyncio.run(main(url, int(count), int(broadcasts), float(deadline)))
