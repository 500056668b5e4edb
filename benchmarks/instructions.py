"""CPU instructions per message or per connection, counted with callgrind.

Wall-clock rates on a shared VM move by a factor of two from minute to
minute; instruction counts do not. This runs one in-process workload
(`benchmarks.inprocess`) twice under `valgrind --tool=callgrind`, with a
small and a large size, and divides the difference of the totals by the
difference of the sizes: startup, imports and warm-up cancel out.

    python -m benchmarks.instructions tether_direct text          # per message
    python -m benchmarks.instructions tether graph --sizes 1,1001  # per connection
    python -m benchmarks.instructions general text                # the general loop
    python -m benchmarks.instructions fast request                # a request (@on, "ref")

`APP` is a name of `benchmarks.apps`, or `fast` / `general`: the workload's
tether controller served directly, on the fast path or (a subclass with
`_fast_path = False`) through the general receive loop; `metered` /
`metered_general` are the same with `metrics = TetherMetrics(...)` set. The
`event` and `request` workloads (`benchmarks.workloads.REQUEST_WORKLOADS`) are
tether's alone: the `@on` controller of `benchmarks.apps.tether_requests`
answering an event bare, or as a request; `concurrent` serves it with
`max_concurrency = 8`. Each run first
opens a dozen warm-up connections, so CPython 3.11 has specialized the
code before the counted part. Needs `valgrind` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.apps import APPS_BY_NAME
from benchmarks.inprocess import time_connections, time_messages
from benchmarks.workloads import REQUEST_WORKLOADS, WORKLOADS, Workload

WARM_UP_CONNECTIONS = 12
LOOPS = ("fast", "general", "metered", "metered_general", "concurrent")
ALL_WORKLOADS = {**WORKLOADS, **REQUEST_WORKLOADS}
REPO_ROOT = Path(__file__).resolve().parents[1]
_COLLECTED = re.compile(r"Collected : (\d+)")


def load(app_name: str, workload: Workload) -> Any:
    """The ASGI app to count: a benchmark app, or a tether controller on a chosen loop."""
    if app_name not in LOOPS:
        return importlib.import_module(APPS_BY_NAME[app_name].module).app
    from benchmarks.apps import tether_controllers as controllers
    from benchmarks.apps import tether_requests as requests

    if workload.name in REQUEST_WORKLOADS:
        return requests.Concurrent if app_name == "concurrent" else requests.Routed
    base = {"text": controllers.TextEcho, "json": controllers.JsonEcho}.get(
        workload.name, controllers.TypedEcho
    )
    attrs: dict[str, Any] = {}
    if app_name.endswith("general"):
        attrs["_fast_path"] = False
    if app_name.startswith("metered"):
        from prometheus_client import CollectorRegistry

        from tether.metrics import TetherMetrics

        attrs["metrics"] = TetherMetrics(registry=CollectorRegistry())
    return type(f"{base.__name__}_{app_name}", (base,), attrs) if attrs else base


async def run(app: Any, workload: Workload, size: int) -> None:
    """Warm up, then one connection of `size` messages (or `size` connections)."""
    for _ in range(WARM_UP_CONNECTIONS):
        if workload.is_message_workload:
            await time_messages(app, workload, 50)
        else:
            await time_connections(app, workload, 5)
    if workload.is_message_workload:
        await time_messages(app, workload, size)
    else:
        await time_connections(app, workload, size)


def count(app_name: str, workload_name: str, size: int) -> int:
    """Instructions of one whole run of `size`, counted by callgrind in a child process."""
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={Path(scratch) / 'callgrind.out'}",
                sys.executable,
                "-m",
                "benchmarks.instructions",
                "--child",
                app_name,
                workload_name,
                "--sizes",
                str(size),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=False,
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    """Print the instructions per unit of one app and workload."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("app", help="a benchmark app, or one of " + " / ".join(LOOPS))
    parser.add_argument("workload", choices=sorted(ALL_WORKLOADS))
    parser.add_argument("--sizes", default=None, help="small,large (10,5010 or 1,1001)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workload = ALL_WORKLOADS[args.workload]
    if args.child:
        try:  # the loop the other benchmarks run on, where installed
            import uvloop
        except ImportError:  # pragma: no cover
            asyncio.run(run(load(args.app, workload), workload, int(args.sizes)))
        else:
            uvloop.run(run(load(args.app, workload), workload, int(args.sizes)))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not on PATH", file=sys.stderr)
        return 2
    default = "10,5010" if workload.is_message_workload else "1,1001"
    small, large = (int(n) for n in (args.sizes or default).split(","))
    low, high = count(args.app, args.workload, small), count(args.app, args.workload, large)
    unit = "message" if workload.is_message_workload else "connection"
    per_unit = (high - low) / (large - small)
    print(f"{args.app} {args.workload}: {per_unit:,.0f} instructions a {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
