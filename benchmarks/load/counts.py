"""What each load-test worker reports about itself, and how the harness asks for it.

With `uvicorn --workers N` an HTTP request reaches whichever worker the kernel
hands it to, so a stats route could not reach a chosen worker. Instead each
worker writes its counts to `<pid>.json` in the directory named by
`TETHER_LOAD_COUNTS`: once when it has started (so the harness learns its pid
and knows it is ready) and again on every SIGUSR1. The harness signals the
pids it wants, waits (bounded) for their files, and reads them.

A worker's counts: its asyncio tasks, resident memory (VmRSS, after
`malloc_trim`), the broker's groups and members in this process, the live
sessions, the live controller instances and all objects the cycle collector
tracks; all taken after a `gc.collect()`, so garbage that only waits for the
cycle collector is not mistaken for a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tether.controllers.shutdown import sessions

COUNTS_DIR_ENV = "TETHER_LOAD_COUNTS"
ASK = signal.SIGUSR1


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of one process (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _trim_malloc() -> None:
    # glibc keeps freed memory in its heaps for reuse; malloc_trim hands back the free
    # pages, so RSS shows memory in use rather than what the allocator still holds.
    with contextlib.suppress(OSError, AttributeError):  # not glibc: RSS includes it
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker_counts(broker: Any, controller: type) -> dict[str, Any]:
    """This process's counts, as the harness compares them (see the module docstring)."""
    gc.collect()
    groups = broker.groups()
    tracked = gc.get_objects()
    held = rss_bytes()
    _trim_malloc()
    return {
        "pid": os.getpid(),
        "tasks": len(asyncio.all_tasks()),
        "rss_untrimmed": held,
        "rss": rss_bytes(),
        "groups": len(groups),
        "members": sum(len(broker.members(group)) for group in groups),
        "sessions": len(sessions.live),
        "controllers": sum(1 for obj in tracked if isinstance(obj, controller)),
        "objects": len(tracked),
    }


def _write(directory: Path, counts: dict[str, Any]) -> None:
    # Written aside and renamed, so the harness never reads half a file.
    final = directory / f"{counts['pid']}.json"
    partial = final.with_suffix(".partial")
    partial.write_text(json.dumps(counts))
    partial.replace(final)


def report_on_signal(broker: Any, controller: type) -> None:
    """In a worker, on its running event loop: write the counts now and on every SIGUSR1.

    Does nothing unless `TETHER_LOAD_COUNTS` names a directory. The signal
    handler runs as a loop callback, between tasks, so it reads the broker's
    tables in a consistent state.
    """
    name = os.environ.get(COUNTS_DIR_ENV)
    if not name:
        return
    directory = Path(name)

    def report() -> None:
        _write(directory, worker_counts(broker, controller))

    asyncio.get_running_loop().add_signal_handler(ASK, report)
    report()


def started_workers(directory: Path, count: int, timeout: float) -> list[int]:
    """Wait (at most `timeout` s) until `count` workers have written their first counts."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sorted(int(path.stem) for path in directory.glob("*.json"))
        if len(pids) >= count:
            return pids
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pids)} of {count} workers started within {timeout}s")
        time.sleep(0.05)


async def ask_counts(
    directory: Path, pids: Iterable[int], timeout: float = 30.0
) -> dict[int, dict[str, Any]]:
    """Signal each worker in `pids` and return its fresh counts (bounded by `timeout`)."""
    wanted = list(pids)
    for pid in wanted:
        (directory / f"{pid}.json").unlink(missing_ok=True)
        os.kill(pid, ASK)
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(wanted):
        for pid in wanted:
            path = directory / f"{pid}.json"
            if pid not in found and path.exists():
                found[pid] = json.loads(path.read_text())
        if len(found) < len(wanted):
            if time.monotonic() > deadline:
                missing = sorted(set(wanted) - set(found))
                raise TimeoutError(f"workers {missing} did not report within {timeout}s")
            await asyncio.sleep(0.05)
    return found
