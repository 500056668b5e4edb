"""Load client for the end-to-end benchmark, run in its own process pinned to its own core.

`python -m benchmarks.e2e_client --targets raw=8001,tether=8002 --duration 2` measures,
against servers on 127.0.0.1: text-echo round trips per second with p50/p99 latency at
each connection count (`--connections 1,50`), and handshakes per second on the graph
route. Each app's `--duration` is cut into `--slices` that alternate between the apps,
so a slow spell of the machine lands on all of them alike. It prints one JSON object.
It uses picows when it imports, else the `websockets` client. Every loop stops at its
deadline and every await has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from benchmarks.workloads import GRAPH_PATH, TEXT_MESSAGE, TEXT_PATH, TOKEN, USER_AGENT

STEP_TIMEOUT = 5.0
PAYLOAD = TEXT_MESSAGE.encode()
RoundTrip = Callable[[], Awaitable[None]]
Connection = tuple[RoundTrip, Callable[[], Awaitable[None]]]  # (round_trip, close)


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


class Tally:
    """What one app's slices of a measurement add up to."""

    def __init__(self) -> None:
        self.done = 0
        self.seconds = 0.0
        self.errors = 0
        self.latencies: list[float] = []
        self.slice_rates: list[float] = []

    def add_slice(self, done: int, seconds: float) -> None:
        """Count one slice: `done` round trips (or handshakes) in `seconds`."""
        self.done += done
        self.seconds += seconds
        self.slice_rates.append(done / seconds)

    @property
    def per_second(self) -> float:
        """The rate over all slices together."""
        return self.done / self.seconds if self.seconds else 0.0


async def _echo_slice(opened: list[Connection], seconds: float, tally: Tally) -> None:
    """Echo on every live connection of one app for `seconds`; drop the ones that fail."""
    latencies: list[float] = []
    failed: list[Connection] = []

    async def drive(connection: Connection, deadline: float) -> None:
        clock = time.perf_counter
        round_trip = connection[0]
        while True:
            started = clock()
            try:
                await round_trip()
            except (ConnectionError, asyncio.TimeoutError, OSError):
                failed.append(connection)
                return
            latencies.append(clock() - started)
            if clock() >= deadline:
                return

    # Warm-up, untimed: one round trip each, after the other apps had the machine.
    await asyncio.gather(*(drive(connection, 0.0) for connection in opened))
    latencies.clear()
    started = time.perf_counter()
    live = [connection for connection in opened if connection not in failed]
    await asyncio.gather(*(drive(connection, started + seconds) for connection in live))
    tally.add_slice(len(latencies), time.perf_counter() - started)
    tally.latencies += latencies
    tally.errors += len(failed)
    for connection in failed:
        opened.remove(connection)


def _interleaved(names: list[str], slices: int) -> Iterator[str]:
    """Every app once per slice round, the order rotated each round."""
    for index in range(slices):
        shift = index % len(names)
        yield from names[shift:] + names[:shift]


async def measure_round_trips(
    client: PicowsClient | WebsocketsClient,
    urls: dict[str, str],
    connections: int,
    duration: float,
    slices: int,
) -> dict[str, dict[str, Any]]:
    """Echo on `connections` connections per app, `duration` s per app in interleaved slices.

    Every app's connections stay open for the whole measurement; only one
    app's are busy at a time. Returns `{app: result}`, a result being rate
    and latency, or `{"error": ...}` for an app that could not be reached.
    """
    opened: dict[str, list[Connection]] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, url in urls.items():
        try:
            opened[name] = list(
                await asyncio.gather(*(client.open(url) for _ in range(connections)))
            )
        except (ConnectionError, asyncio.TimeoutError, OSError) as exc:
            results[name] = {"error": f"connecting: {type(exc).__name__}: {exc}"}
    tallies = {name: Tally() for name in opened}
    try:
        for name in _interleaved(list(opened), slices):
            if opened[name]:
                await _echo_slice(opened[name], duration / slices, tallies[name])
    finally:
        closes = [close() for connections_ in opened.values() for _, close in connections_]
        await asyncio.gather(*closes, return_exceptions=True)
    for name, tally in tallies.items():
        if not tally.done:
            results[name] = {"error": f"no round trip completed ({tally.errors} failed)"}
            continue
        tally.latencies.sort()
        results[name] = {
            "connections": connections,
            "round_trips": tally.done,
            "per_second": tally.per_second,
            "slice_rates": tally.slice_rates,
            "p50_ms": _percentile(tally.latencies, 0.50) * 1000,
            "p99_ms": _percentile(tally.latencies, 0.99) * 1000,
            "errors": tally.errors,
        }
    return results


async def _handshake_slice(
    client: PicowsClient | WebsocketsClient,
    url: str,
    concurrency: int,
    seconds: float,
    tally: Tally,
) -> None:
    """Connect and close from `concurrency` workers for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            try:
                _, close = await client.open(url)
                await close()
            except (ConnectionError, asyncio.TimeoutError, OSError) as exc:
                tally.errors += 1
                if tally.errors > 100:
                    raise RuntimeError(f"too many failed handshakes: {exc}") from exc
                continue
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.add_slice(done, time.perf_counter() - started)


async def measure_handshakes(
    client: PicowsClient | WebsocketsClient,
    urls: dict[str, str],
    concurrency: int,
    duration: float,
    slices: int,
) -> dict[str, dict[str, Any]]:
    """Handshakes per second on each app, `duration` s per app in interleaved slices."""
    tallies = {name: Tally() for name in urls}
    failed: dict[str, str] = {}
    for name in _interleaved(list(urls), slices):
        if name in failed:
            continue
        try:
            await _handshake_slice(
                client, urls[name], concurrency, duration / slices, tallies[name]
            )
        except RuntimeError as exc:
            failed[name] = str(exc)
    return {
        name: {"error": failed[name]}
        if name in failed
        else {
            "concurrency": concurrency,
            "handshakes": tally.done,
            "per_second": tally.per_second,
            "slice_rates": tally.slice_rates,
            "errors": tally.errors,
        }
        for name, tally in tallies.items()
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement the arguments ask for; return `{"client", "apps": {app: ...}}`."""
    client = pick_client(args.client)
    bases = {name: f"ws://127.0.0.1:{port}" for name, port in args.targets.items()}
    apps: dict[str, dict[str, Any]] = {
        name: {"round_trips": [], "handshakes": None} for name in bases
    }
    for connections in args.connections:
        echo = {name: base + TEXT_PATH for name, base in bases.items()}
        measured = await measure_round_trips(client, echo, connections, args.duration, args.slices)
        for name, result in measured.items():
            if "error" in result:
                apps[name].setdefault("error", result["error"])
            else:
                apps[name]["round_trips"].append(result)
    if args.handshake_concurrency:
        graph = {name: f"{base}{GRAPH_PATH}?token={TOKEN}" for name, base in bases.items()}
        measured = await measure_handshakes(
            client, graph, args.handshake_concurrency, args.duration, args.slices
        )
        for name, result in measured.items():
            if "error" in result:
                apps[name].setdefault("error", result["error"])
            else:
                apps[name]["handshakes"] = result
    return {"client": client.name, "apps": apps}


def _targets(text: str) -> dict[str, int]:
    targets = {}
    for item in text.split(","):
        name, _, port = item.partition("=")
        targets[name] = int(port)
    return targets


def client_timeout(apps: int, connection_counts: int, duration: float) -> float:
    """Seconds the whole client run may take: generous, but bounded."""
    return 60 + apps * (connection_counts + 1) * (4 * duration + 5)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, pin to a core if asked, run, print JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--targets", type=_targets, required=True, help="app=port,... (servers on 127.0.0.1)"
    )
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per app")
    parser.add_argument("--slices", type=int, default=8, help="interleaved slices per app")
    parser.add_argument(
        "--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50]
    )
    parser.add_argument("--handshake-concurrency", type=int, default=8)
    parser.add_argument("--client", choices=("auto", "picows", "websockets"), default="auto")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    timeout = client_timeout(len(args.targets), len(args.connections), args.duration)
    result = asyncio.run(asyncio.wait_for(run(args), timeout=timeout))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
