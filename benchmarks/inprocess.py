"""In-process benchmark: drive each app straight through ASGI, with no server and no network.

The client is a script of pre-built `receive` messages and a `send` callable that
counts replies, so what is timed is the framework's own work: routing, the
websocket state machine, decoding, the handler, encoding, dependency resolution.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.apps import BASELINE, AppSpec
from benchmarks.workloads import LEDGER, USER_AGENT, Workload

Message = dict[str, Any]
ASGIApp = Callable[..., Any]

CONNECT: Message = {"type": "websocket.connect"}
DISCONNECT: Message = {"type": "websocket.disconnect", "code": 1000, "reason": ""}
SAMPLE_TIMEOUT = 120.0
SLICES = 5  # each sample is taken in this many slices, alternating between the apps
EXTRA_RECEIVES_ALLOWED = 3


class ScriptedClient:
    """The peer of one connection: plays pre-built messages, counts what the app sends."""

    __slots__ = ("_messages", "_next", "accepted", "close_code", "last_reply", "replies")

    def __init__(self, messages: Sequence[Message]) -> None:
        self._messages = messages
        self._next = 0
        self.accepted = False
        self.close_code: int | None = None
        self.last_reply: Message | None = None
        self.replies = 0

    async def receive(self) -> Message:
        """Return the next scripted message; after the script, repeat the disconnect a little."""
        index = self._next
        self._next = index + 1
        if index < len(self._messages):
            return self._messages[index]
        if index - len(self._messages) >= EXTRA_RECEIVES_ALLOWED:
            raise RuntimeError("the app kept receiving after the client disconnected")
        return DISCONNECT

    async def send(self, message: Message) -> None:
        """Record one message from the app."""
        kind = message["type"]
        if kind == "websocket.send":
            self.replies += 1
            self.last_reply = message
        elif kind == "websocket.accept":
            self.accepted = True
        elif kind == "websocket.close":
            self.close_code = message.get("code", 1000)


def make_scope(workload: Workload) -> dict[str, Any]:
    """Build the websocket scope a server would pass for the workload's route."""
    return websocket_scope(workload.path, workload.query)


def websocket_scope(path: str, query: str = "") -> dict[str, Any]:
    """Build the websocket scope a server would pass for `path?query`, fresh each call."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", USER_AGENT.encode()),
            (b"connection", b"upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "subprotocols": [],
        "state": {},
        "extensions": {},
    }


def _reply_payload(message: Message) -> Any:
    text = message.get("text")
    return text if text is not None else message.get("bytes", b"").decode()


def check_replies(client: ScriptedClient, workload: Workload, expected: int) -> None:
    """Raise AssertionError unless the app accepted and replied correctly `expected` times."""
    if not client.accepted:
        raise AssertionError(f"not accepted (close code {client.close_code})")
    if client.replies != expected:
        raise AssertionError(f"{client.replies} replies to {expected} messages")
    if expected and client.last_reply is not None:
        payload = _reply_payload(client.last_reply)
        if workload.reply_is_json:
            payload = json.loads(payload)
        if payload != workload.expected_reply:
            raise AssertionError(f"wrong reply {payload!r}, expected {workload.expected_reply!r}")


async def time_messages(app: ASGIApp, workload: Workload, count: int) -> float:
    """Send `count` messages through one connection; return messages per second."""
    message = {"type": "websocket.receive", "text": workload.message}
    client = ScriptedClient([CONNECT, *([message] * count), DISCONNECT])
    scope = make_scope(workload)
    started = time.perf_counter()
    await app(scope, client.receive, client.send)
    elapsed = time.perf_counter() - started
    check_replies(client, workload, count)
    return count / elapsed


async def time_connections(app: ASGIApp, workload: Workload, count: int) -> tuple[float, int]:
    """Open and close `count` connections one after another.

    Returns (connections per second, how many connections had their generator
    dependency torn down before the app returned).
    """
    script = (CONNECT, DISCONNECT)
    torn_down = 0
    LEDGER.closed.clear()
    started = time.perf_counter()
    for _ in range(count):
        serial = LEDGER.opened + 1
        client = ScriptedClient(script)
        await app(make_scope(workload), client.receive, client.send)
        if not client.accepted:
            raise AssertionError(f"not accepted (close code {client.close_code})")
        if serial in LEDGER.closed:
            torn_down += 1
    elapsed = time.perf_counter() - started
    return count / elapsed, torn_down


@dataclass
class Cell:
    """The samples of one app on one workload, and why it failed if it did."""

    samples: list[float] = field(default_factory=list)
    count: int = 0
    teardowns_ok: bool | None = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        """The median of the samples, or None without any."""
        return statistics.median(self.samples) if self.samples else None


async def _sample(app: ASGIApp, workload: Workload, count: int, cell: Cell) -> float | None:
    """Run `count` messages or connections; return the rate, or None (the cell has the error)."""
    try:
        if workload.is_message_workload:
            return await asyncio.wait_for(time_messages(app, workload, count), SAMPLE_TIMEOUT)
        rate, teardowns = await asyncio.wait_for(
            time_connections(app, workload, count), SAMPLE_TIMEOUT
        )
        if workload.name == "graph":
            cell.teardowns_ok = cell.teardowns_ok is not False and teardowns == count
        return rate
    except Exception as exc:  # a broken app is reported, not fatal to the run
        cell.error = f"{type(exc).__name__}: {exc}"
        return None


async def _interleaved_samples(
    apps: Sequence[tuple[AppSpec, ASGIApp]],
    workload: Workload,
    cells: dict[str, Cell],
    shuffle: Callable[[list[Any]], None],
) -> None:
    """One sample per app, taken in `SLICES` slices that alternate between the apps.

    A slow spell of a shared machine lasts longer than one app's slice, so it lands
    on every app alike instead of on whichever app happened to be running. Each
    timed slice follows a short untimed one of the same app, so no app pays for
    the caches its predecessor in the order left cold; and each slice takes the
    apps in a fresh order (`shuffle`), so what an app's predecessor leaves behind
    (a heap churned by the slowest peer, say) is not always left to the same app.
    """
    seconds = dict.fromkeys(cells, 0.0)
    done = dict.fromkeys(cells, 0)
    order = list(apps)
    for _ in range(SLICES):
        shuffle(order)
        for spec, app in order:
            cell = cells[spec.name]
            if cell.error is not None:
                continue
            count = max(1, cell.count // SLICES)
            # Untimed, first: the app before leaves the caches full of its own code.
            await _sample(app, workload, max(1, count // 10), Cell())
            gc.collect()  # and not its garbage either
            rate = await _sample(app, workload, count, cell)
            if rate:
                seconds[spec.name] += count / rate
                done[spec.name] += count
    for name, cell in cells.items():
        if cell.error is None and seconds[name]:
            cell.samples.append(done[name] / seconds[name])


async def run_inprocess(
    apps: Sequence[tuple[AppSpec, ASGIApp]],
    workloads: Sequence[Workload],
    *,
    rounds: int,
    messages: int,
    connections: int,
    sample_seconds: float = 0.25,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Cell]]:
    """Run every workload on every app, interleaved in slices; return cells by workload, app.

    A warm-up pass checks each app's replies and sizes its samples: `messages` (or
    `connections`) is the most a sample does, fewer for an app so slow that a sample
    would take longer than `sample_seconds`, never fewer than a tenth of it.
    """
    cells = {w.name: {spec.name: Cell() for spec, _ in apps} for w in workloads}

    log("in-process: warm-up")
    for workload in workloads:
        most = messages if workload.is_message_workload else connections
        for spec, app in apps:
            cell = cells[workload.name][spec.name]
            gc.collect()
            rate = await _sample(app, workload, max(1, most // 10), cell)
            if rate is None:
                log(f"  {spec.name}/{workload.name} fails and is skipped: {cell.error}")
                continue
            cell.count = max(most // 10, min(most, int(rate * sample_seconds)), 1)
            cell.teardowns_ok = None

    for round_index in range(rounds):
        started = time.perf_counter()
        for workload in workloads:
            shuffle = random.Random(f"{workload.name}/{round_index}").shuffle
            await _interleaved_samples(apps, workload, cells[workload.name], shuffle)
        log(f"in-process: round {round_index + 1}/{rounds} in {time.perf_counter() - started:.1f}s")
    return cells


def paired_ratio(samples: Sequence[float], base_samples: Sequence[float]) -> float | None:
    """The median over rounds of `sample / base sample` from the same round, or None.

    Pairing the samples of one round, taken seconds apart, keeps a slow spell of a
    shared machine from landing on one app and not the other.
    """
    ratios = [mine / base for mine, base in zip(samples, base_samples, strict=False) if base]
    return statistics.median(ratios) if ratios else None


def summarize(cells: dict[str, dict[str, Cell]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Turn cells into plain data: median, samples, paired ratio to the baseline, errors."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for workload_name, by_app in cells.items():
        base = by_app.get(BASELINE)
        summary[workload_name] = {}
        for app_name, cell in by_app.items():
            median = cell.median
            ratio = paired_ratio(cell.samples, base.samples) if base else None
            summary[workload_name][app_name] = {
                "median": median,
                "per_sample": cell.count,
                "ratio_to_raw": ratio,
                "samples": cell.samples,
                "teardowns_ok": cell.teardowns_ok,
                "error": cell.error,
            }
    return summary
