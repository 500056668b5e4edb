"""Load client for the end-to-end benchmark, run in its own process pinned to its own core.

`python -m benchmarks.e2e_client --port P --duration 2 --connections 1,50` measures,
against a server on 127.0.0.1: text-echo round trips per second with p50/p99 latency at
each connection count, and handshakes per second on the graph route. It prints one
JSON object. It uses picows when it imports, else the `websockets` client. Every
loop stops at its deadline and every await has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.workloads import GRAPH_PATH, TEXT_MESSAGE, TEXT_PATH, TOKEN, USER_AGENT

STEP_TIMEOUT = 5.0
PAYLOAD = TEXT_MESSAGE.encode()
RoundTrip = Callable[[], Awaitable[None]]


class PicowsClient:
    """Connections made with picows (a Cython websocket client with a callback API)."""

    name = "picows"

    def __init__(self) -> None:
        import picows

        self._picows = picows

    async def open(self, url: str) -> tuple[RoundTrip, Callable[[], Awaitable[None]]]:
        """Connect; return `(round_trip, close)` coroutine functions for this connection."""
        picows = self._picows
        loop = asyncio.get_running_loop()

        class Listener(picows.WSListener):  # type: ignore[misc, name-defined]
            waiter: asyncio.Future[None] | None = None

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == picows.WSMsgType.CLOSE:
                    transport.disconnect()
                elif self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(None)

            def on_ws_disconnected(self, transport: Any) -> None:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_exception(ConnectionError("disconnected"))

        transport, listener = await asyncio.wait_for(
            picows.ws_connect(Listener, url, extra_headers={"User-Agent": USER_AGENT}),
            STEP_TIMEOUT,
        )

        async def round_trip() -> None:
            listener.waiter = loop.create_future()
            transport.send(picows.WSMsgType.TEXT, PAYLOAD)
            await asyncio.wait_for(listener.waiter, STEP_TIMEOUT)

        async def close() -> None:
            transport.send_close(picows.WSCloseCode.OK)
            transport.disconnect()
            await asyncio.wait_for(transport.wait_disconnected(), STEP_TIMEOUT)

        return round_trip, close


class WebsocketsClient:
    """Connections made with the `websockets` package's asyncio client."""

    name = "websockets"

    async def open(self, url: str) -> tuple[RoundTrip, Callable[[], Awaitable[None]]]:
        """Connect; return `(round_trip, close)` coroutine functions for this connection."""
        from websockets.asyncio.client import connect

        connection = await asyncio.wait_for(
            connect(url, user_agent_header=USER_AGENT, compression=None), STEP_TIMEOUT
        )

        async def round_trip() -> None:
            await connection.send(TEXT_MESSAGE)
            await asyncio.wait_for(connection.recv(), STEP_TIMEOUT)

        async def close() -> None:
            await asyncio.wait_for(connection.close(), STEP_TIMEOUT)

        return round_trip, close


def pick_client(preferred: str) -> PicowsClient | WebsocketsClient:
    """Return the picows client when asked for and importable, else the websockets client."""
    if preferred in ("auto", "picows"):
        try:
            return PicowsClient()
        except ImportError:
            if preferred == "picows":
                raise
    return WebsocketsClient()


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def measure_round_trips(
    client: PicowsClient | WebsocketsClient, url: str, connections: int, duration: float
) -> dict[str, Any]:
    """Echo on `connections` connections at once for `duration` s; return rate and latency."""
    opened = await asyncio.gather(*(client.open(url) for _ in range(connections)))
    latencies: list[float] = []
    errors = 0
    deadline = 0.0

    async def drive(round_trip: RoundTrip) -> None:
        nonlocal errors
        clock = time.perf_counter
        while clock() < deadline:
            started = clock()
            try:
                await round_trip()
            except (ConnectionError, asyncio.TimeoutError, OSError):
                errors += 1
                return
            latencies.append(clock() - started)

    for round_trip, _ in opened:  # warm-up: one round trip each
        await round_trip()
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(drive(round_trip) for round_trip, _ in opened))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(close() for _, close in opened), return_exceptions=True)
    latencies.sort()
    return {
        "connections": connections,
        "round_trips": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000 if latencies else None,
        "p99_ms": _percentile(latencies, 0.99) * 1000 if latencies else None,
        "errors": errors,
    }


async def measure_handshakes(
    client: PicowsClient | WebsocketsClient, url: str, concurrency: int, duration: float
) -> dict[str, Any]:
    """Connect and close repeatedly from `concurrency` workers for `duration` s; return rate."""
    done = 0
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                _, close = await client.open(url)
                await close()
            except (ConnectionError, asyncio.TimeoutError, OSError) as exc:
                errors += 1
                if errors > 100:
                    raise RuntimeError(f"too many failed handshakes: {exc}") from exc
                continue
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "handshakes": done,
        "per_second": done / elapsed,
        "errors": errors,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement the arguments ask for; return them as one dict."""
    client = pick_client(args.client)
    base = f"ws://127.0.0.1:{args.port}"
    result: dict[str, Any] = {"client": client.name, "round_trips": [], "handshakes": None}
    for connections in args.connections:
        result["round_trips"].append(
            await measure_round_trips(client, base + TEXT_PATH, connections, args.duration)
        )
    if args.handshake_concurrency:
        url = f"{base}{GRAPH_PATH}?token={TOKEN}"
        result["handshakes"] = await measure_handshakes(
            client, url, args.handshake_concurrency, args.duration
        )
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, pin to a core if asked, run, print JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument(
        "--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50]
    )
    parser.add_argument("--handshake-concurrency", type=int, default=8)
    parser.add_argument("--client", choices=("auto", "picows", "websockets"), default="auto")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(asyncio.wait_for(run(args), timeout=60 + 4 * args.duration))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
