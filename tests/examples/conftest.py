"""Shared pieces for the example tests: asyncio only, free ports, and example servers.

The examples' Redis broker is asyncio-only, and Playwright's async API needs
asyncio, so these tests do not run under trio. `serve_example` starts
`python -m examples.<name> ...` as a real server process and always stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30.0


@pytest.fixture
def anyio_backend() -> str:
    """Run the `@pytest.mark.anyio` tests of the examples under asyncio only."""
    return "asyncio"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(
    process: subprocess.Popen[bytes], port: int, log: Path, workers: int = 1
) -> None:
    """Wait (bounded) until every worker has started and `port` answers HTTP.

    One answer only shows that one worker is up, so the log must also say
    `Application startup complete.` once per worker.
    """
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if log.read_text().count("Application startup complete.") >= workers:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # answered, with an error status: an app without a page
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"the example did not serve on port {port}:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), then SIGKILL if needed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers left behind, if any
    if process.poll() is None:
        process.wait(timeout=5)


@pytest.fixture
def serve_example(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start `python -m examples.<name> --port P [args]`; returns P once it answers HTTP.

    Every server started is stopped when the test ends, however it ends.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> int:
        port = free_port()
        log = tmp_path / f"{name}-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", f"examples.{name}", "--port", str(port), *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # its own process group, so workers stop with it
            )
        started.append(process)
        workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
        _wait_until_serving(process, port, log, workers)
        return port

    try:
        yield start
    finally:
        for process in started:
            _stop(process)
