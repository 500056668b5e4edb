"""End to end: controllers under uvicorn (websockets and wsproto), with a real client."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from uvicorn_server import UvicornServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
WS_IMPLEMENTATIONS = ["websockets", "wsproto"]
# (uvicorn target, path prefix): a bare controller and the same one in Starlette.
TARGETS = {"bare": ("servers_app:Probe", ""), "starlette": ("servers_app:app", "/probe/lobby")}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


def Server(target: str, ws: str, env: dict[str, str] | None = None) -> UvicornServer:
    """uvicorn serving `target` (from this folder) on a free loopback port."""
    return UvicornServer(target, ws=ws, app_dir=HERE, env=env, capture=True)


@pytest.fixture(scope="module", params=WS_IMPLEMENTATIONS)
def ws_impl(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module", params=sorted(TARGETS))
def probe(request: pytest.FixtureRequest, ws_impl: str) -> Iterator[tuple[Server, str]]:
    """A running server and the URL of its `Probe` controller."""
    target, path = TARGETS[request.param]
    server = Server(target, ws_impl)
    try:
        yield server, server.url(path)
    finally:
        server.stop()


async def test_echo(probe: tuple[Server, str]) -> None:
    _, url = probe
    with anyio.fail_after(5):
        async with connect(url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"


async def test_a_one_mebibyte_binary_message_round_trips(probe: tuple[Server, str]) -> None:
    _, url = probe
    payload = os.urandom(1024 * 1024)
    with anyio.fail_after(10):
        async with connect(url, max_size=None) as ws:
            await ws.send(payload)
            assert await ws.recv() == payload


async def test_500_pipelined_messages_come_back_in_order(probe: tuple[Server, str]) -> None:
    _, url = probe
    with anyio.fail_after(10):
        async with connect(url) as ws:
            for i in range(500):
                await ws.send(f"message {i}")
            replies = [await ws.recv() for _ in range(500)]
    assert replies == [f"message {i}" for i in range(500)]


async def test_a_refused_handshake_is_http_403(probe: tuple[Server, str]) -> None:
    _, url = probe
    with anyio.fail_after(5), pytest.raises(InvalidStatus) as refused:
        async with connect(url + "?refuse=1"):
            pass
    assert refused.value.response.status_code == 403


async def test_an_unconvertible_query_value_is_http_403(probe: tuple[Server, str]) -> None:
    _, url = probe
    with anyio.fail_after(5), pytest.raises(InvalidStatus) as refused:
        async with connect(url + "?refuse=perhaps"):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("command", "code"),
    [("!close 4001", 4001), ("!raise 4002", 4002), ("!crash", 1011)],
)
async def test_close_codes_seen_by_the_client(
    probe: tuple[Server, str], command: str, code: int
) -> None:
    _, url = probe
    with anyio.fail_after(5):
        async with connect(url) as ws:
            await ws.send(command)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


@pytest.mark.parametrize("ws_name", WS_IMPLEMENTATIONS)
@pytest.mark.parametrize("target", ["servers_app:Journal", "servers_app:app"])
async def test_server_shutdown_closes_1001_and_tears_everything_down(
    tmp_path: Path, ws_name: str, target: str
) -> None:
    log = tmp_path / "server.log"
    server = Server(target, ws_name, env={"TETHER_SERVER_LOG": str(log)})
    path = "/journal" if target.endswith(":app") else "/"
    try:
        with anyio.fail_after(15):
            async with connect(server.url(path)) as ws:
                await ws.send("hi")
                assert await ws.recv() == "pool:hi"
                server.process.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            # tether closes live connections with 1001 before the server's own 1012.
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            while server.process.poll() is None:
                await anyio.sleep(0.05)
    finally:
        output = server.stop()
    assert log.read_text().splitlines() == [
        "pool up",
        "session up",
        "on_disconnect 1001",
        "session down",
        "pool down",
    ], output


@pytest.mark.parametrize(("ws_name", "dropped"), [("websockets", 1006), ("wsproto", 1005)])
async def test_a_dropped_connection_runs_on_disconnect_once_and_tears_down(
    tmp_path: Path, ws_name: str, dropped: int
) -> None:
    log = tmp_path / "server.log"
    server = Server("servers_app:Journal", ws_name, env={"TETHER_SERVER_LOG": str(log)})
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


@pytest.mark.parametrize("probe", ["bare"], indirect=True)
async def test_plain_http_to_a_bare_controller_is_426(probe: tuple[Server, str]) -> None:
    server, _ = probe
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
