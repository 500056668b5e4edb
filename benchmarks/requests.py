"""Request round trips end to end, against raw ASGI's echo and tether's plain echo.

    python -m benchmarks.requests [--duration 4] [--slices 8] [--connections 1,50]

Each app runs under uvicorn in its own process on a free loopback port; one
picows client (in this process) alternates between them in short slices, one
message in flight per connection, and reports round trips per second with
p50/p99 latency: `raw` and `tether-echo` echo text, `routed` answers an `@on`
event bare, `requests` answers the same event sent as a request (with its
`"ref"`), and `concurrent` does so with `max_concurrency = 8`. It prints a
table and each app's ratio to `tether-echo`; `--json` prints the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.apps import AppSpec
from benchmarks.e2e import uvicorn_servers
from benchmarks.e2e_client import STEP_TIMEOUT, measure_round_trips
from benchmarks.workloads import TEXT_MESSAGE, TEXT_PATH

TETHER = "benchmarks.apps.tether_requests"
EVENT = json.dumps({"type": "echo", "text": TEXT_MESSAGE})
REQUEST = json.dumps({"type": "echo", "ref": 1, "text": TEXT_MESSAGE})
# (name, server, path, payload): what one round trip sends.
CASES = (
    ("raw", "benchmarks.apps.raw_asgi", TEXT_PATH, TEXT_MESSAGE),
    ("tether-echo", TETHER, "/echo", TEXT_MESSAGE),
    ("routed", TETHER, "/routed", EVENT),
    ("requests", TETHER, "/requests", REQUEST),
    ("concurrent", TETHER, "/concurrent", REQUEST),
)


class PayloadClient:
    """picows connections whose round trip sends the payload of the URL's case."""

    def __init__(self, payloads: dict[str, bytes]) -> None:
        import picows

        self._picows = picows
        self._payloads = payloads

    async def open(self, url: str) -> tuple[Callable[[], Awaitable[None]], Any]:
        """Connect; return `(round_trip, close)` for this connection."""
        picows = self._picows
        loop = asyncio.get_running_loop()
        payload = self._payloads[url]

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

        transport, listener = await asyncio.wait_for(picows.ws_connect(Listener, url), STEP_TIMEOUT)

        async def round_trip() -> None:
            listener.waiter = loop.create_future()
            transport.send(picows.WSMsgType.TEXT, payload)
            await asyncio.wait_for(listener.waiter, STEP_TIMEOUT)

        async def close() -> None:
            transport.send_close(picows.WSCloseCode.OK)
            transport.disconnect()
            await asyncio.wait_for(transport.wait_disconnected(), STEP_TIMEOUT)

        return round_trip, close


def run(duration: float, slices: int, connections: list[int]) -> dict[str, Any]:
    """Measure every case at every connection count; `{count: {case: result}}`."""
    specs = [AppSpec(name, name, module) for name, module, _, _ in CASES]
    with uvicorn_servers(specs, "websockets", None) as (ports, errors):
        if errors:
            raise RuntimeError(f"servers did not start: {errors}")
        urls = {name: f"ws://127.0.0.1:{ports[name]}{path}" for name, _, path, _ in CASES}
        payloads = {urls[name]: payload.encode() for name, _, _, payload in CASES}
        client = PayloadClient(payloads)
        return {
            count: asyncio.run(measure_round_trips(client, urls, count, duration, slices))
            for count in connections
        }


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per case")
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--connections", default="1,50")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.connections.split(",")]
    results = run(args.duration, args.slices, counts)
    if args.json:
        print(json.dumps(results))
        return 0
    print("| connections | case | round trips/s | p50 ms | p99 ms | vs tether-echo |")
    print("|---|---|---|---|---|---|")
    for count, cases in results.items():
        floor = cases["tether-echo"]["per_second"]
        for name, result in cases.items():
            if "error" in result:
                print(f"| {count} | {name} | {result['error']} | | | |")
                continue
            print(
                f"| {count} | {name} | {result['per_second']:,.0f} | {result['p50_ms']:.3f} "
                f"| {result['p99_ms']:.3f} | {result['per_second'] / floor:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
