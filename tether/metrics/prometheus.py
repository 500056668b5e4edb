"""`TetherMetrics`: Prometheus metrics for controllers, their groups and brokers.

Set it as a controller's `metrics` class attribute (inherited, like
`broker`). Each controller class gets a `ControllerMeter` when it is
defined, with its label values bound once; connections report to it at
their events (accept, refusal, error, close), and their message counts and
queues are read when Prometheus scrapes, by a collector registered here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tether.metrics.connection import ConnectionStats
from tether.metrics.tracing import ConnectionTracing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from starlette.types import Scope, Send

    from tether.brokers import Broker
    from tether.controllers.websocket import WebSocket

__all__ = ["ControllerMeter", "TetherMetrics", "meter_of"]


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "TetherMetrics needs prometheus_client: pip install 'tether[metrics]'"
        ) from exc
    return prometheus_client


class TetherMetrics:
    """Prometheus metrics (and optionally OpenTelemetry spans) for controllers.

    ```python
    metrics = TetherMetrics()                # prometheus_client's default registry

    class Chat(WebSocketController):
        metrics = metrics                    # inherited by subclasses
    ```

    Every metric is named `<namespace>_...` and labelled with `controller`
    (the class name). See the [metrics page](../metrics.md) for the list.

    Args:
        registry: the `CollectorRegistry` to register in (default:
            `prometheus_client.REGISTRY`). One `TetherMetrics` per registry.
        namespace: the metric name prefix.
        spans: start an OpenTelemetry span per connection (a no-op when
            `opentelemetry-api` is not installed).
        tracer_provider: the `TracerProvider` for those spans (default: the global one).
        group_sizes: also export, per group, `<namespace>_group_size` for every
            group with local members, and `<namespace>_presence_keys` and
            `<namespace>_presence_connections` for every group with local presence
            (time series per group: mind the cardinality).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "tether",
        spans: bool = False,
        tracer_provider: Any = None,
        group_sizes: bool = False,
    ) -> None:
        prometheus = _prometheus()
        self.registry = registry = registry if registry is not None else prometheus.REGISTRY
        self.namespace = namespace
        self.group_sizes = group_sizes
        self.tracing = ConnectionTracing(tracer_provider) if spans else None
        self._meters: dict[str, ControllerMeter] = {}
        self._brokers: list[Broker] = []
        self._lock = threading.Lock()

        def counter(name: str, doc: str, *labels: str) -> Any:
            return prometheus.Counter(
                name, doc, ("controller", *labels), namespace=namespace, registry=registry
            )

        self.connections = counter("connections", "WebSocket connections accepted.")
        self.open = prometheus.Gauge(
            "connections_open",
            "WebSocket connections accepted and not yet ended.",
            ("controller",),
            namespace=namespace,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.refused = counter("handshakes_refused", "Handshakes refused, by reason.", "reason")
        self.closes = counter(
            "closes", "Ended connections, by the close code on_disconnect got.", "code"
        )
        self.errors = counter("handler_errors", "Exceptions raised by hooks.", "exception")
        self.joins = counter("group_joins", "Groups joined.")
        self.recoveries = counter(
            "recoveries", "Joins with since=, by outcome (recovered, or why not).", "outcome"
        )
        registry.register(_LiveCollector(self))

    def controller(self, cls: type) -> ControllerMeter:
        """The meter of controller class `cls` (made when the class is defined)."""
        name = cls.__name__
        broker = getattr(cls, "broker", None)
        with self._lock:
            if broker is not None and all(b is not broker for b in self._brokers):
                self._brokers.append(broker)
            meter = self._meters.get(name)
            if meter is None:
                meter = self._meters[name] = ControllerMeter(self, name)
            return meter

    def _collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = self.namespace
        received = CounterMetricFamily(
            f"{ns}_messages_received", "Data frames received.", labels=["controller"]
        )
        sent = CounterMetricFamily(
            f"{ns}_messages_sent",
            "Data frames sent: replies and group messages.",
            labels=["controller"],
        )
        dropped = CounterMetricFamily(
            f"{ns}_outbound_dropped",
            "Group messages dropped by a full outbound queue (drop_oldest).",
            labels=["controller"],
        )
        queued = GaugeMetricFamily(
            f"{ns}_outbound_queued",
            "Group messages waiting in outbound queues.",
            labels=["controller"],
        )
        deepest = GaugeMetricFamily(
            f"{ns}_outbound_queued_max",
            "Group messages waiting in the fullest outbound queue.",
            labels=["controller"],
        )
        with self._lock:
            meters = list(self._meters.values())
            brokers = list(self._brokers)
        for meter in meters:
            totals = meter.totals()
            labels = [meter.name]
            received.add_metric(labels, totals[0])
            sent.add_metric(labels, totals[1])
            dropped.add_metric(labels, totals[2])
            queued.add_metric(labels, totals[3])
            deepest.add_metric(labels, totals[4])
        yield from (received, sent, dropped, queued, deepest)
        yield from self._collect_brokers(brokers)

    def _collect_brokers(self, brokers: list[Broker]) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = self.namespace
        groups = GaugeMetricFamily(
            f"{ns}_groups", "Groups with members in this process.", labels=["broker"]
        )
        members = GaugeMetricFamily(
            f"{ns}_group_members",
            "Group memberships in this process (a connection in two groups counts twice).",
            labels=["broker"],
        )
        sizes = GaugeMetricFamily(
            f"{ns}_group_size", "Members of a group in this process.", labels=["broker", "group"]
        )
        reconnects = CounterMetricFamily(
            f"{ns}_broker_reconnects", "Times a broker got its connection back.", labels=["broker"]
        )
        by_kind: dict[str, list[int]] = {}
        # Per (broker kind, group), summed over brokers of a kind: the labels cannot tell two
        # MemoryBrokers apart, and one series per label set is all an exposition may hold.
        group_sizes: dict[tuple[str, str], int] = {}
        present: dict[tuple[str, str], list[int]] = {}  # [distinct keys, connections]
        for broker in brokers:
            kind = type(broker).__name__
            found = getattr(broker, "groups", None)
            names = found() if callable(found) else []
            counts = by_kind.setdefault(kind, [0, 0, 0, 0])
            counts[0] += len(names)
            for group in names:
                size = len(broker.members(group))
                counts[1] += size
                if self.group_sizes:
                    group_sizes[kind, group] = group_sizes.get((kind, group), 0) + size
            count = getattr(broker, "reconnects", None)
            if count is not None:
                counts[2] += count
                counts[3] = 1
            presence = getattr(broker, "presence_counts", None) if self.group_sizes else None
            if callable(presence):
                for group, (n_keys, n_connections) in presence().items():
                    total = present.setdefault((kind, group), [0, 0])
                    total[0] += n_keys
                    total[1] += n_connections
        for kind, (n_groups, n_members, n_reconnects, reconnecting) in by_kind.items():
            groups.add_metric([kind], n_groups)
            members.add_metric([kind], n_members)
            if reconnecting:
                reconnects.add_metric([kind], n_reconnects)
        yield from (groups, members, reconnects)
        if self.group_sizes:
            for labels, size in group_sizes.items():
                sizes.add_metric(labels, size)
            yield sizes
            yield from self._presence_families(present)

    def _presence_families(self, present: dict[tuple[str, str], list[int]]) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        ns = self.namespace
        keys = GaugeMetricFamily(
            f"{ns}_presence_keys",
            "Distinct presence keys in a group, from this process's connections.",
            labels=["broker", "group"],
        )
        connections = GaugeMetricFamily(
            f"{ns}_presence_connections",
            "Connections present in a group, from this process.",
            labels=["broker", "group"],
        )
        for labels, (n_keys, n_connections) in present.items():
            keys.add_metric(labels, n_keys)
            connections.add_metric(labels, n_connections)
        yield from (keys, connections)


def meter_of(cls: type) -> ControllerMeter | None:
    """The meter for controller class `cls`, from its `metrics` attribute (None: metrics off)."""
    metrics = getattr(cls, "metrics", None)
    if metrics is None:
        return None
    if not isinstance(metrics, TetherMetrics):
        from tether.di.compiler import ConfigurationError

        raise ConfigurationError(
            f"{cls.__name__}.metrics must be a tether.metrics.TetherMetrics(...) or None, "
            f"got {metrics!r}"
        )
    return metrics.controller(cls)


class ControllerMeter:
    """One controller class's metrics, label values bound once; its connections report here."""

    __slots__ = (
        "_closes",
        "_connections",
        "_errors",
        "_joins",
        "_live",
        "_lock",
        "_open",
        "_recoveries",
        "_refused",
        "_totals",
        "metrics",
        "name",
        "tracing",
    )

    def __init__(self, metrics: TetherMetrics, name: str) -> None:
        self.metrics = metrics
        self.name = name
        self.tracing = metrics.tracing if metrics.tracing and metrics.tracing.enabled else None
        self._connections = metrics.connections.labels(name)
        self._open = metrics.open.labels(name)
        self._joins = metrics.joins.labels(name)
        # Children made on first use, then kept: `labels()` is a lookup under a lock.
        self._closes: dict[int, Any] = {}
        self._refused: dict[str, Any] = {}
        self._errors: dict[str, Any] = {}
        self._recoveries: dict[str, Any] = {}
        self._live: set[ConnectionStats] = set()
        # What ended connections counted: received, sent, dropped.
        self._totals = [0, 0, 0]
        self._lock = threading.Lock()

    def connect(self, scope: Scope, send: Send) -> ConnectionStats:
        """A client is connecting: the stats (and span) of its connection."""
        span = self.tracing.start(scope, self.name) if self.tracing else None
        return ConnectionStats(self, send, span)

    def opened(self, stats: ConnectionStats) -> None:
        """A connection was accepted."""
        self._connections.inc()
        self._open.inc()
        with self._lock:
            self._live.add(stats)

    def error(self, exc: BaseException) -> None:
        """A hook raised `exc`."""
        _child(self._errors, self.metrics.errors, self.name, type(exc).__name__).inc()

    def joined(self, since: object, recovery: Any) -> None:
        """A join returned `recovery`; with `since`, count its outcome."""
        self._joins.inc()
        if since is not None:
            outcome = "recovered" if recovery.recovered else str(recovery.reason)
            _child(self._recoveries, self.metrics.recoveries, self.name, outcome).inc()

    def ended(self, stats: ConnectionStats, websocket: WebSocket, code: int | None) -> None:
        """A session is over: count its close or refusal, fold its counts into the totals."""
        queue = stats.queue
        with self._lock:
            totals = self._totals
            received, sent = stats.frames_received, stats.frames_sent
            totals[0] += received
            totals[1] += sent
            totals[2] += queue.dropped if queue is not None else 0
            was_open = stats in self._live
            self._live.discard(stats)
        attributes: dict[str, Any] = {
            "tether.messages.received": received,
            "tether.messages.sent": sent,
        }
        if was_open:
            self._open.dec()
        if websocket.accepted:
            if code is not None:
                _child(self._closes, self.metrics.closes, self.name, code).inc()
                attributes["websocket.close_code"] = code
        else:
            reason = stats.refusal
            if reason is None and websocket.close_code is not None:
                reason = "closed"  # on_connect closed, or raised WebSocketException
            if reason is not None:
                _child(self._refused, self.metrics.refused, self.name, reason).inc()
                attributes["tether.refused"] = reason
        if stats.span is not None and self.tracing is not None:
            self.tracing.end(stats.span, attributes)

    def totals(self) -> tuple[int, int, int, int, int]:
        """Received, sent, dropped (ended and live connections), queued now, fullest queue."""
        with self._lock:
            received, sent, dropped = self._totals
            live = tuple(self._live)
        queued = deepest = 0
        for stats in live:
            received += stats.frames_received
            sent += stats.frames_sent
            queue = stats.queue
            if queue is not None:
                dropped += queue.dropped
                depth = len(queue)
                queued += depth
                deepest = max(deepest, depth)
        return received, sent, dropped, queued, deepest


def _child(children: dict[Any, Any], metric: Any, name: str, value: Any) -> Any:
    child = children.get(value)
    if child is None:
        child = children[value] = metric.labels(name, str(value))
    return child


class _LiveCollector:
    """What is read at scrape time: message counts, queues, groups, broker reconnects."""

    def __init__(self, metrics: TetherMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._collect()

    def describe(self) -> list[Metric]:
        return []  # not checked against the registry's names: they are our own
