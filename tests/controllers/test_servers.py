"""End to end: controllers under uvicorn, hypercorn, granian and daphne, with a real client.

Each server runs in a subprocess on a free loopback port (`asgi_server`);
uvicorn runs twice, with its `websockets` and its `wsproto` implementation.
Where servers differ, the expectation says how (see docs/deployment.md).
"""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from asgi_server import AsgiServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
# (server, uvicorn's ws implementation): every way of serving that the tests run.
SERVERS = {
    "uvicorn-websockets": ("uvicorn", "websockets"),
    "uvicorn-wsproto": ("uvicorn", "wsproto"),
    "hypercorn": ("hypercorn", ""),
    "granian": ("granian", ""),
    "daphne": ("daphne", ""),
}
# (target, path prefix): a bare controller and the same one in Starlette.
TARGETS = {"bare": ("servers_app:Probe", ""), "starlette": ("servers_app:app", "/probe/lobby")}
# daphne (autobahn) sends only close codes 1000 and 3000-4999: tether falls back to 1000.
NORMAL_CLOSE_ONLY = {"daphne"}
# Servers without the `websocket.http.response` extension answer every refusal with 403.
NO_DENIAL_RESPONSE = {"daphne"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


def Server(name: str, target: str, env: dict[str, str] | None = None) -> AsgiServer:
    """`name` (a key of SERVERS) serving `target` (from this folder) on a free loopback port."""
    server, ws = SERVERS[name]
    return AsgiServer(target, server=server, ws=ws or "websockets", app_dir=HERE, env=env,
                      capture=True)  # fmt: skip


def served_params() -> list[tuple[str, str]]:
    return [(name, target) for name in SERVERS for target in sorted(TARGETS)]


@pytest.fixture(scope="module", params=served_params(), ids="-".join)
def probe(request: pytest.FixtureRequest) -> Iterator[tuple[AsgiServer, str]]:
    """A running server and the URL of its `Probe` controller."""
    name, target = request.param
    module, path = TARGETS[target]
    server = Server(name, module)
    try:
        yield server, server.url(path)
    finally:
        server.stop()


def server_of(probe: tuple[AsgiServer, str]) -> str:
    return probe[0].server


async def test_echo(probe: tuple[AsgiServer, str]) -> None:
    _, url = probe
    with anyio.fail_after(5):
        async with connect(url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"


async def test_a_one_mebibyte_binary_message_round_trips(probe: tuple[AsgiServer, str]) -> None:
    _, url = probe
    payload = os.urandom(1024 * 1024)
    with anyio.fail_after(10):
        async with connect(url, max_size=None) as ws:
            await ws.send(payload)
            assert await ws.recv() == payload


async def test_500_pipelined_messages_come_back_in_order(probe: tuple[AsgiServer, str]) -> None:
    _, url = probe
    with anyio.fail_after(10):
        async with connect(url) as ws:
            for i in range(500):
                await ws.send(f"message {i}")
            replies = [await ws.recv() for _ in range(500)]
    assert replies == [f"message {i}" for i in range(500)]


async def test_a_refused_handshake_is_http_403(probe: tuple[AsgiServer, str]) -> None:
    _, url = probe
    with anyio.fail_after(5), pytest.raises(InvalidStatus) as refused:
        async with connect(url + "?refuse=1"):
            pass
    assert refused.value.response.status_code == 403


async def test_an_unconvertible_query_value_is_http_403(probe: tuple[AsgiServer, str]) -> None:
    _, url = probe
    with anyio.fail_after(5), pytest.raises(InvalidStatus) as refused:
        async with connect(url + "?refuse=perhaps"):
            pass
    assert refused.value.response.status_code == 403


async def test_an_http_exception_is_its_status_where_the_server_sends_denials(
    probe: tuple[AsgiServer, str],
) -> None:
    _, url = probe
    with anyio.fail_after(5), pytest.raises(InvalidStatus) as refused:
        async with connect(url + "?deny=401"):
            pass
    response = refused.value.response
    if server_of(probe) in NO_DENIAL_RESPONSE:
        assert response.status_code == 403
    else:
        assert (response.status_code, bytes(response.body)) == (401, b"not for you")


@pytest.mark.parametrize(
    ("command", "code"),
    [("!close 4001", 4001), ("!raise 4002", 4002), ("!crash", 1011)],
)
async def test_close_codes_seen_by_the_client(
    probe: tuple[AsgiServer, str], command: str, code: int
) -> None:
    _, url = probe
    with anyio.fail_after(5):
        async with connect(url) as ws:
            await ws.send(command)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    if server_of(probe) in NORMAL_CLOSE_ONLY and not 3000 <= code <= 4999:
        code = 1000
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


# granian's worker stops on the same signal as tether without waiting for the app: its
# close with 1001 may be lost (the connection just drops), and the session's task may
# never run again, so on_disconnect and its teardown do not run (see docs/deployment.md).
SHUTDOWN_RACE = {"granian"}
GRACEFUL = [
    *SERVERS.keys() - {"daphne"},
    pytest.param("daphne", marks=pytest.mark.xfail(strict=True, reason=(
        "daphne runs no lifespan, so nothing sees its SIGTERM: it drops the connections"))),
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(GRACEFUL, key=str))
@pytest.mark.parametrize("target", ["servers_app:Journal", "servers_app:app"])
async def test_server_shutdown_closes_1001_and_tears_everything_down(
    tmp_path: Path, name: str, target: str
) -> None:
    log = tmp_path / "server.log"
    server = Server(name, target, env={"TETHER_SERVER_LOG": str(log)})
    path = "/journal" if target.endswith(":app") else "/"
    try:
        with anyio.fail_after(15):
            async with connect(server.url(path)) as ws:
                await ws.send("hi")
                assert await ws.recv() == "pool:hi"
                server.process.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            # tether closes live connections with 1001 before the server closes them itself.
            received = closed.value.rcvd
            if not (name in SHUTDOWN_RACE and received is None):
                assert received is not None
                assert received.code == 1001
            while server.process.poll() is None:
                await anyio.sleep(0.05)
    finally:
        output = server.stop()
    lines = log.read_text().splitlines()
    if name in SHUTDOWN_RACE and "session down" not in lines:
        # The server stopped the session's task somewhere in its ending (before
        # on_disconnect, or between it and teardown): app-scoped teardown still runs.
        assert lines[:2] == ["pool up", "session up"], output
        assert lines[-1] == "pool down", output
        return
    assert lines == [
        "pool up",
        "session up",
        "on_disconnect 1001",
        "session down",
        "pool down",
    ], output


@pytest.mark.parametrize(
    ("name", "dropped"), [("uvicorn-websockets", 1006), ("uvicorn-wsproto", 1005)]
)
async def test_a_dropped_connection_runs_on_disconnect_once_and_tears_down(
    tmp_path: Path, name: str, dropped: int
) -> None:
    log = tmp_path / "server.log"
    server = Server(name, "servers_app:Journal", env={"TETHER_SERVER_LOG": str(log)})
    try:
        with anyio.fail_after(10):
            async with connect(server.url("/")) as ws:
                await ws.send("hi")
                assert await ws.recv() == "pool:hi"
                ws.transport.abort()  # no close frame: the TCP connection just goes
            while "session down" not in (log.read_text() if log.exists() else ""):
                await anyio.sleep(0.02)
    finally:
        output = server.stop()
    assert log.read_text().splitlines() == [
        "pool up",
        "session up",
        f"on_disconnect {dropped}",
        "session down",
        "pool down",
    ], output


@pytest.mark.parametrize("probe", [("uvicorn-websockets", "bare")], indirect=True, ids="-".join)
async def test_plain_http_to_a_bare_controller_is_426(probe: tuple[AsgiServer, str]) -> None:
    server, _ = probe
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
