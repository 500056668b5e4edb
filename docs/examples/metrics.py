"""A chat with Prometheus metrics, OpenTelemetry spans and a /metrics route."""

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from tether import WebSocketController
from tether.metrics import TetherMetrics, metrics_app

registry = CollectorRegistry()  # or leave it out: prometheus_client's default registry
metrics = TetherMetrics(registry=registry, spans=True)


class Metered(WebSocketController):
    """Every controller of the app inherits the switch."""

    metrics = metrics


class Chat(Metered):
    encoding = "json"

    async def on_connect(self, room: str) -> None:
        await self.join(room)

    async def on_receive(self, data: dict, room: str) -> None:
        await self.publish(room, data)


app = Starlette(
    routes=[
        WebSocketRoute("/ws/{room}", Chat),
        Route("/metrics", metrics_app(metrics)),
    ]
)
