"""`/metrics` of an app under uvicorn, scraped after real clients played a scenario.

The scenario touches every metric a connection can move: accepted
connections and their messages, a close code of each kind (client, app,
decode error, handler error), a refusal for each reason, a group join and
a flood that overflows the outbound queue.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from asgi_server import AsgiServer
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.anyio

GOOD = {"origin": "http://good.example"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio's


@pytest.fixture
def server() -> Iterator[AsgiServer]:
    with AsgiServer("tests.metrics.metrics_app:app") as running:
        yield running


def scrape(server: AsgiServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `/metrics`, by name and labels."""
    answer = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def closed_with(ws) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(20):
            await ws.recv()
    return closed.value.rcvd.code


async def refused(url: str, **options) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(url, **options):
            pass
    return refusal.value.response.status_code


async def settled(server: AsgiServer) -> dict:
    """Scrape once no connection is open any more (the server ends them on its own time)."""
    with anyio.fail_after(10):
        for _ in range(200):
            samples = scrape(server)
            if value(samples, "tether_connections_open", controller="Echo") == 0:
                return samples
            await anyio.sleep(0.05)
    raise AssertionError("connections stayed open")


async def test_a_scrape_after_a_scenario_counts_what_the_clients_saw(server: AsgiServer) -> None:
    echo = server.url("/echo")
    async with connect(echo, additional_headers=GOOD) as ws:
        for text in ("a", "b"):
            await ws.send(text)
            assert await ws.recv() == text
        await ws.send("quiet")
        await ws.send("c")
        assert await ws.recv() == "c"  # "quiet" got nothing back
    async with connect(echo, additional_headers=GOOD) as ws:
        await ws.send(b"\x00")  # a text controller: 1003
        assert await closed_with(ws) == 1003
    async with connect(echo, additional_headers=GOOD) as ws:
        await ws.send("boom")
        assert await closed_with(ws) == 1011
    async with connect(echo, additional_headers=GOOD) as ws:
        await ws.send("bye")
        assert await closed_with(ws) == 4000

    assert await refused(echo, additional_headers={"origin": "http://evil.example"}) == 403
    assert await refused(echo, additional_headers=GOOD, subprotocols=["other"]) == 403
    assert await refused(echo + "?token=nope", additional_headers=GOOD) == 403
    assert await refused(server.url("/rooms/lobby")) == 403  # room must be an int

    async with connect(echo, additional_headers=GOOD) as ws:
        await ws.send("flood")
        assert [await ws.recv(), await ws.recv()] == ["8", "9"]  # 0-7 dropped
        live = scrape(server)
        assert value(live, "tether_connections_open", controller="Echo") == 1
        assert value(live, "tether_groups", broker="MemoryBroker") == 1
        assert value(live, "tether_group_members", broker="MemoryBroker") == 1
        assert value(live, "tether_outbound_dropped_total", controller="Echo") == 8
        assert value(live, "tether_outbound_queued", controller="Echo") == 0

    samples = await settled(server)
    assert value(samples, "tether_connections_total", controller="Echo") == 5
    assert value(samples, "tether_messages_received_total", controller="Echo") == 8
    assert value(samples, "tether_messages_sent_total", controller="Echo") == 5
    for code, times in (("1000", 2), ("1003", 1), ("1011", 1), ("4000", 1)):
        assert value(samples, "tether_closes_total", controller="Echo", code=code) == times
    for reason in ("origin", "subprotocol", "permission"):
        assert (
            value(samples, "tether_handshakes_refused_total", controller="Echo", reason=reason) == 1
        )
    assert (
        value(samples, "tether_handshakes_refused_total", controller="Room", reason="parameter")
        == 1
    )
    assert (
        value(samples, "tether_handler_errors_total", controller="Echo", exception="RuntimeError")
        == 1
    )
    assert value(samples, "tether_group_joins_total", controller="Echo") == 1
    assert value(samples, "tether_outbound_dropped_total", controller="Echo") == 8
    assert value(samples, "tether_groups", broker="MemoryBroker") == 0
    assert value(samples, "tether_connections_total", controller="Room") == 0
