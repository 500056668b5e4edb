"""TetherMetrics in process: off by default, the same counts from every loop, spans, /metrics."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry

from tether import ConfigurationError, Query, WebSocketController
from tether.brokers import MemoryBroker
from tether.controllers._receive import receive_fast, receive_fast_metered, receive_general
from tether.metrics import TetherMetrics, metrics_app
from tether.testing import connect

pytestmark = pytest.mark.anyio


class Echo(WebSocketController):
    """Echo text; "quiet" answers nothing, "news" publishes to the group it joined."""

    encoding = "text"

    async def on_connect(self) -> None:
        await self.join("news")

    async def on_receive(self, data: str) -> str | None:
        if data == "news":
            await self.publish("news", "extra")
            return None
        if data == "boom":
            raise ValueError("boom")
        return None if data == "quiet" else data


def metered(base: type, registry: CollectorRegistry, **attrs: Any) -> type:
    attrs.setdefault("broker", MemoryBroker())
    return type(base.__name__, (base,), {"metrics": TetherMetrics(registry=registry), **attrs})


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"controller": "Echo", **labels})


async def test_without_metrics_nothing_is_registered_and_the_fast_path_is_unchanged() -> None:
    before = {name for name in REGISTRY._names_to_collectors if name.startswith("tether")}
    cls = type("Plain", (Echo,), {"broker": MemoryBroker()})
    assert cls.metrics is None and cls._plan.meter is None
    assert cls._receive_messages is receive_fast
    async with connect(cls, "/") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
    after = {name for name in REGISTRY._names_to_collectors if name.startswith("tether")}
    assert before == after == set()


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "general loop"])
async def test_every_loop_counts_the_same_frames(fast: bool) -> None:
    registry = CollectorRegistry()
    cls = metered(Echo, registry, _fast_path=fast)
    assert cls._receive_messages is (receive_fast_metered if fast else receive_general)
    async with connect(cls, "/") as ws:
        for text in ("a", "quiet", "news", "b"):
            await ws.send_text(text)
        # The group message goes through the delivery task: it may come after "b".
        assert sorted([await ws.receive_text() for _ in range(3)]) == ["a", "b", "extra"]
        # While the connection lives, the scrape sees it.
        assert sample(registry, "tether_messages_received_total") == 4
        assert sample(registry, "tether_messages_sent_total") == 3
        assert sample(registry, "tether_connections_open") == 1
        assert registry.get_sample_value("tether_group_members", {"broker": "MemoryBroker"}) == 1
    assert sample(registry, "tether_messages_received_total") == 4
    assert sample(registry, "tether_messages_sent_total") == 3
    assert sample(registry, "tether_connections_open") == 0
    assert sample(registry, "tether_connections_total") == 1
    assert sample(registry, "tether_closes_total", code="1000") == 1
    assert sample(registry, "tether_group_joins_total") == 1


async def test_a_subclass_inherits_metrics_under_its_own_name() -> None:
    registry = CollectorRegistry()
    base = metered(Echo, registry)
    child = type("Child", (base,), {})
    async with connect(child, "/") as ws:
        await ws.send_text("a")
        assert await ws.receive_text() == "a"
    assert registry.get_sample_value("tether_connections_total", {"controller": "Child"}) == 1


def test_metrics_that_are_not_tether_metrics_fail_at_class_definition() -> None:
    with pytest.raises(ConfigurationError, match=r"Broken\.metrics must be a tether"):
        type("Broken", (WebSocketController,), {"metrics": CollectorRegistry()})


async def test_a_span_per_connection_with_what_happened() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    cls = type(
        "Echo",
        (Echo,),
        {
            "broker": MemoryBroker(),
            "metrics": TetherMetrics(registry=registry, spans=True, tracer_provider=provider),
        },
    )
    async with connect(cls, "/chat") as ws:
        await ws.send_text("a")
        assert await ws.receive_text() == "a"
    async with connect(cls, "/chat") as ws:
        await ws.send_text("boom")
        with pytest.raises(Exception):  # noqa: B017 - closed with 1011, as the wire says
            await ws.receive_text(timeout=2)
    first, second = exporter.get_finished_spans()
    assert first.name == "websocket Echo" and first.kind is SpanKind.SERVER
    assert first.attributes["url.path"] == "/chat"
    assert first.attributes["websocket.close_code"] == 1000
    assert first.attributes["tether.messages.received"] == 1
    assert first.attributes["tether.messages.sent"] == 1
    assert first.status.status_code is StatusCode.UNSET
    assert second.attributes["websocket.close_code"] == 1011
    assert second.status.status_code is StatusCode.ERROR
    assert [event.name for event in second.events] == ["exception"]


async def test_metrics_app_serves_gets_and_refuses_other_methods() -> None:
    registry = CollectorRegistry()
    cls = metered(Echo, registry)
    async with connect(cls, "/") as ws:
        await ws.send_text("a")
        await ws.receive_text()
    transport = httpx.ASGITransport(app=metrics_app(cls.metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/")
        assert answer.status_code == 200
        assert 'tether_messages_sent_total{controller="Echo"} 1.0' in answer.text
        only = await client.get("/", params={"name[]": "tether_connections_total"})
        assert "tether_connections_total" in only.text and "messages" not in only.text
        assert (await client.post("/")).status_code == 405
        head = await client.head("/")
        assert head.status_code == 200 and head.content == b""
        openmetrics = await client.get("/", headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")


async def test_brokers_of_metered_classes_are_reported_with_their_groups() -> None:
    from tether.brokers import RedisBroker

    registry = CollectorRegistry()
    metrics = TetherMetrics(registry=registry)
    redis = RedisBroker("redis://127.0.0.1:1/0")  # never used: nothing connects
    type("OverRedis", (Echo,), {"metrics": metrics, "broker": redis})
    type("InMemory", (Echo,), {"metrics": metrics, "broker": MemoryBroker()})
    assert (
        registry.get_sample_value("tether_broker_reconnects_total", {"broker": "RedisBroker"}) == 0
    )
    assert registry.get_sample_value("tether_groups", {"broker": "RedisBroker"}) == 0
    assert registry.get_sample_value("tether_groups", {"broker": "MemoryBroker"}) == 0
    # A MemoryBroker never reconnects: no series for it.
    assert (
        registry.get_sample_value("tether_broker_reconnects_total", {"broker": "MemoryBroker"})
        is None
    )


async def test_group_sizes_are_per_group_when_asked_for() -> None:
    registry = CollectorRegistry()
    cls = type(
        "Echo",
        (Echo,),
        {"broker": MemoryBroker(), "metrics": TetherMetrics(registry=registry, group_sizes=True)},
    )
    async with connect(cls, "/"), connect(cls, "/"):
        labels = {"broker": "MemoryBroker", "group": "news"}
        assert registry.get_sample_value("tether_group_size", labels) == 2


async def test_a_group_in_two_brokers_of_one_kind_is_one_series_with_their_sum() -> None:
    from prometheus_client import generate_latest

    registry = CollectorRegistry()
    metrics = TetherMetrics(registry=registry, group_sizes=True)
    first = type("First", (Echo,), {"broker": MemoryBroker(), "metrics": metrics})
    second = type("Second", (Echo,), {"broker": MemoryBroker(), "metrics": metrics})
    async with connect(first, "/"), connect(second, "/"), connect(second, "/"):
        exposed = generate_latest(registry).decode().splitlines()
    news = [line for line in exposed if line.startswith("tether_group_size{")]
    assert news == ['tether_group_size{broker="MemoryBroker",group="news"} 3.0']


async def test_refusals_by_an_error_before_accept_and_recoveries_are_counted() -> None:
    from tether.brokers.history import GroupHistory

    class Joiner(WebSocketController):
        async def on_connect(self, since: str = Query("")) -> None:
            if since == "boom":
                raise RuntimeError("before accept")
            await self.join("kept", since=since or None)
            await self.join("plain", since="not-a-position")

    registry = CollectorRegistry()
    broker = MemoryBroker(history={"kept": GroupHistory(size=10)})
    cls = type("Joiner", (Joiner,), {"broker": broker, "metrics": TetherMetrics(registry=registry)})
    async with connect(cls, "/?since=0:0"):
        pass
    with pytest.raises(Exception):  # noqa: B017 - the handshake is refused
        async with connect(cls, "/?since=boom"):
            pass
    labels = {"controller": "Joiner"}
    get = registry.get_sample_value
    assert get("tether_handshakes_refused_total", {**labels, "reason": "error"}) == 1
    assert get("tether_handler_errors_total", {**labels, "exception": "RuntimeError"}) == 1
    assert get("tether_group_joins_total", labels) == 2
    assert get("tether_recoveries_total", {**labels, "outcome": "malformed"}) == 1
    outcomes = {
        sample.labels["outcome"]: sample.value
        for family in registry.collect()
        if family.name == "tether_recoveries"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert sum(outcomes.values()) == 2  # the join without since= is no recovery


async def test_a_websocket_class_that_overrides_send_still_gets_every_frame() -> None:
    from tether import WebSocket

    seen: list[str] = []

    class Watching(WebSocket):
        async def send(self, message: Any) -> None:
            if message["type"] == "websocket.send":
                seen.append(message["text"])
            await super().send(message)

    registry = CollectorRegistry()
    cls = metered(Echo, registry, websocket_class=Watching)
    assert cls._receive_messages is receive_general
    async with connect(cls, "/") as ws:
        await ws.send_text("a")
        assert await ws.receive_text() == "a"
    assert seen == ["a"]
    assert sample(registry, "tether_messages_sent_total") == 1
    assert sample(registry, "tether_messages_received_total") == 1
