"""Footprint: memory per idle connection, for raw ASGI, each peer and tether.

For each app, `N` in-process connections (`benchmarks.idle`) are opened on its
`/bare/...` route and left parked in `receive()` after accept; the memory they hold
is the growth of `tracemalloc`'s traced total between before opening and once all
are parked (each after `gc.collect()`), divided by `N`. tracemalloc counts the bytes
Python allocated, which is steadier than RSS (the allocator keeps freed arenas, and
RSS moves by pages); it does not see memory a C extension takes from `malloc`
directly. The harness's own share (a task, its coroutine frame, the scope dict and
the fake client) is the same for every app, so the raw ASGI row is the floor and
each app's share is its figure minus raw ASGI's.

tether is measured three ways: the bare controller mounted in Starlette (as the
other benchmarks serve it), the same with one connection-scoped generator
dependency (`/scoped/...`), and the bare controller served directly as the ASGI
app, without a router.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.apps import BASELINE
from benchmarks.idle import ASGIApp, IdleConnections
from benchmarks.inprocess import websocket_scope

CONNECTION_COUNTS = (1_000, 10_000)
OPEN_TIMEOUT = 180.0
WARM_UP_CONNECTIONS = 3


@dataclasses.dataclass(frozen=True)
class FootprintRow:
    """One measured row: which loaded app, at which path (or the app object's own attribute)."""

    name: str
    title: str
    app: str
    path: str = "/bare/lobby"
    attribute: str | None = None


def rows_for(app_names: Sequence[str]) -> list[FootprintRow]:
    """The footprint rows for the loaded apps, in table order."""
    from benchmarks.apps import APPS_BY_NAME

    rows = [
        FootprintRow(name, APPS_BY_NAME[name].title, name)
        for name in app_names
        if name not in ("tether", "tether_direct")  # tether's rows follow
    ]
    if "tether" in app_names:
        rows += [
            FootprintRow("tether", "tether controller (in Starlette's router)", "tether"),
            FootprintRow(
                "tether_dep",
                "tether controller + 1 connection-scoped dependency",
                "tether",
                "/scoped/lobby",
            ),
            FootprintRow(
                "tether_direct", "tether controller served directly", "tether", attribute="Bare"
            ),
        ]
    return rows


async def measure(app: ASGIApp, path: str, count: int) -> float:
    """Bytes tracemalloc sees `count` idle connections to `app` hold, per connection."""
    warm = IdleConnections(app, lambda: websocket_scope(path))
    await warm.open(WARM_UP_CONNECTIONS, timeout=OPEN_TIMEOUT)
    await warm.close(timeout=OPEN_TIMEOUT)
    pool = IdleConnections(app, lambda: websocket_scope(path))
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    try:
        await pool.open(count, timeout=OPEN_TIMEOUT)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        await pool.close(timeout=OPEN_TIMEOUT)
    return (after - before) / count


async def run_footprint(
    apps: Sequence[tuple[str, ASGIApp]],
    counts: Sequence[int],
    *,
    rounds: Sequence[int],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every row at every connection count, rows interleaved round-robin.

    `rounds[i]` is how many times `counts[i]` is measured (the last entry repeats):
    a large count takes long under tracemalloc and varies little, so it may take fewer.
    Returns `{"method", "counts", "rounds", "rows": {row: {"title", str(n): {"bytes",
    "samples", "share_above_raw"} or {"error"}}}}`; `bytes` is the median over rounds.
    """
    loaded = dict(apps)
    rows = rows_for(list(loaded))
    samples: dict[str, dict[int, list[float]]] = {row.name: {n: [] for n in counts} for row in rows}
    errors: dict[str, dict[int, str]] = {row.name: {} for row in rows}
    per_count = {n: rounds[min(i, len(rounds) - 1)] for i, n in enumerate(counts)}
    tracemalloc.start()
    try:
        for round_index in range(max(per_count.values())):
            started = time.perf_counter()
            for count in counts:
                if round_index >= per_count[count]:
                    continue
                shift = round_index % len(rows)
                for row in [*rows[shift:], *rows[:shift]]:
                    if count in errors[row.name]:
                        continue
                    app = loaded[row.app]
                    if row.attribute is not None:
                        app = getattr(_module_of(row.app), row.attribute)
                    try:
                        samples[row.name][count].append(await measure(app, row.path, count))
                    except Exception as exc:  # a failing app is reported in its cell
                        errors[row.name][count] = f"{type(exc).__name__}: {exc}"
                        log(f"  footprint {row.name} @{count:,} failed: {exc}")
            elapsed = time.perf_counter() - started
            log(f"footprint: round {round_index + 1}/{max(per_count.values())} in {elapsed:.1f}s")
    finally:
        tracemalloc.stop()
    result: dict[str, Any] = {}
    for row in rows:
        entry: dict[str, Any] = {"title": row.title}
        for count in counts:
            taken = samples[row.name][count]
            if count in errors[row.name] or not taken:
                entry[str(count)] = {"error": errors[row.name].get(count, "no sample")}
            else:
                entry[str(count)] = {"bytes": statistics.median(taken), "samples": taken}
        result[row.name] = entry
    base = result.get(BASELINE, {})
    for entry in result.values():
        for count in counts:
            cell, floor = entry[str(count)], base.get(str(count), {})
            if "bytes" in cell and "bytes" in floor:
                cell["share_above_raw"] = cell["bytes"] - floor["bytes"]
    return {
        "method": "tracemalloc",
        "counts": list(counts),
        "rounds": {str(n): r for n, r in per_count.items()},
        "rows": result,
    }


def _module_of(app_name: str) -> Any:
    import importlib

    from benchmarks.apps import APPS_BY_NAME

    return importlib.import_module(APPS_BY_NAME[app_name].module)
