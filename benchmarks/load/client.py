"""One load-test client process: `count` WebSocket connections that time every broadcast.

    python -m benchmarks.load.client URL COUNT BROADCASTS DEADLINE

Prints `ready {pid: connections}` once every connection has joined, then, after
`BROADCASTS` messages reached every connection or `DEADLINE` seconds passed, one JSON
line: the latencies (publish to receive, in ms), how many arrived, the last arrival.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from websockets.asyncio.client import connect

OPEN_AT_ONCE = 100  # handshakes in flight at a time


async def main(url: str, count: int, broadcasts: int, deadline: float) -> None:
    """Open, report ready, collect, report the figures; every wait is bounded."""
    latencies: list[float] = []
    last = 0
    workers: Counter[str] = Counter()
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    start = asyncio.Event()

    async def one() -> None:
        nonlocal last
        async with gate:
            ws = await connect(url, open_timeout=60, max_queue=None)
            joined = await asyncio.wait_for(ws.recv(), 60)
        workers[str(joined).split()[1]] += 1
        try:
            await start.wait()
            for _ in range(broadcasts):
                message = await ws.recv()
                now = time.monotonic_ns()
                latencies.append((now - json.loads(message)["t"]) / 1e6)
                last = max(last, now)
        finally:
            await ws.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    opened = asyncio.gather(*tasks)
    while sum(workers.values()) < count and not opened.done():
        await asyncio.sleep(0.05)
    print("ready", json.dumps(workers), flush=True)
    start.set()
    try:
        await asyncio.wait_for(opened, deadline)
    except (asyncio.TimeoutError, OSError):
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"latencies_ms": latencies, "received": len(latencies), "last_ns": last}))


if __name__ == "__main__":
    url, count, broadcasts, deadline = sys.argv[1:5]
    asyncio.run(main(url, int(count), int(broadcasts), float(deadline)))
