"""`LoadServer`: `uvicorn --workers N` serving the load app on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from benchmarks.load.counts import COUNTS_DIR_ENV, started_workers

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    """Block (at most `timeout` seconds) until 127.0.0.1:`port` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class LoadServer:
    """`uvicorn --workers N benchmarks.load.app:app`, with lifespan, on a free port.

    Entering waits (at most `startup` s) until every worker has started and
    reported its pid (`pids`); leaving stops uvicorn (SIGTERM, then SIGKILL).
    """

    def __init__(self, workers: int, redis_url: str, *, startup: float = 60.0) -> None:
        self.workers = workers
        self.redis_url = redis_url
        self.startup = startup
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        self._counts = tempfile.TemporaryDirectory(prefix="tether-load-counts-")
        self.counts_dir = Path(self._counts.name)
        self.pids: list[int] = []
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoadServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.load.app:app",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
             "--lifespan", "on", "--log-level", "warning", "--no-access-log"],
            cwd=ROOT,
            env={**os.environ, "TETHER_LOAD_REDIS": self.redis_url,
                 COUNTS_DIR_ENV: str(self.counts_dir),
                 "PYTHONWARNINGS": "ignore::DeprecationWarning"},
        )  # fmt: skip
        try:
            wait_for_port(self.port, self.startup)
            self.pids = started_workers(self.counts_dir, self.workers, self.startup)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def refresh(self, timeout: float = 60.0) -> list[int]:
        """The workers alive now, once there are N again (uvicorn restarts a killed one)."""
        deadline = time.monotonic() + timeout
        while True:
            for path in self.counts_dir.glob("*.json"):
                if not alive(int(path.stem)):
                    path.unlink(missing_ok=True)
            pids = sorted(int(path.stem) for path in self.counts_dir.glob("*.json"))
            if len(pids) >= self.workers or time.monotonic() > deadline:
                self.pids = pids
                return pids
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop uvicorn and its workers (bounded)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._counts.cleanup()
