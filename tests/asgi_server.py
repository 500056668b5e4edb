"""An ASGI server (uvicorn, hypercorn, granian or daphne) in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
# uvicorn deprecates its legacy `--ws websockets` implementation; the tests still cover it.
QUIET = "ignore::DeprecationWarning,ignore::UserWarning"
SERVERS = ("uvicorn", "hypercorn", "granian", "daphne")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server: str, target: str, port: int, ws: str) -> list[str]:
    """The command line that serves `target` with `server` on 127.0.0.1:`port`, one process.

    `ws` picks uvicorn's WebSocket implementation (`websockets` or `wsproto`);
    the other servers have one each.
    """
    run = [sys.executable, "-m", server]
    if server == "uvicorn":
        return [*run, target, "--host", "127.0.0.1", "--port", str(port), "--ws", ws,
                "--lifespan", "on", "--log-level", "warning"]  # fmt: skip
    if server == "hypercorn":
        return [*run, target, "--bind", f"127.0.0.1:{port}", "--workers", "0",
                "--log-level", "warning"]  # fmt: skip
    if server == "granian":
        return [*run, target, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip
    if server == "daphne":
        return [*run, target, "--bind", "127.0.0.1", "--port", str(port), "--verbosity", "0"]
    raise ValueError(f"unknown server {server!r}; expected one of {SERVERS}")


class AsgiServer:
    """`python -m SERVER TARGET` on a free 127.0.0.1 port; always stopped on exit.

    `target` is an import string (`"tests.controllers.churn_app:app"`), resolved
    from the repository root or from `app_dir`. Entering waits (bounded) until
    the port accepts connections.
    """

    def __init__(
        self,
        target: str,
        *,
        server: str = "uvicorn",
        ws: str = "websockets",
        app_dir: Path | None = None,
        env: dict[str, str] | None = None,
        capture: bool = False,
        startup: float = 15.0,
        port: int | None = None,
    ) -> None:
        self.server = server
        self.port = port or free_port()  # a port of its own, or an earlier server's to restart it
        path = [str(app_dir)] if app_dir is not None else []
        path += [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.process = subprocess.Popen(
            server_command(server, target, self.port, ws),
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONWARNINGS": QUIET,
                "PYTHONPATH": os.pathsep.join(path),
                **(env or {}),
            },
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
        )
        self._wait_for_port(startup)

    def url(self, path: str = "/") -> str:
        """The `ws://` URL of `path` on this server."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def _wait_for_port(self, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.server} exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.server} did not listen on port {self.port} within {within}s")

    def output(self) -> str:
        """What the server printed (only with `capture=True`, once it has exited)."""
        stdout = self.process.stdout
        return stdout.read().decode() if stdout and self.process.poll() is not None else ""

    def stop(self) -> str:
        """Terminate (SIGTERM, then SIGKILL) and return what the server printed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.output()

    def __enter__(self) -> AsgiServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
