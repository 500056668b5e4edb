"""An app with metrics on, served by uvicorn in tests/metrics/test_scrape.py.

`Echo` echoes text, and on a few words does what a scenario needs: raise,
close with 4000, stay quiet, or join a group and flood it past its
outbound queue (`outbound_maxsize = 2`: the delivery task starts after the
handler returns, so eight of ten messages are dropped).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from tether import Query, WebSocketController
from tether.metrics import TetherMetrics, metrics_app

registry = CollectorRegistry()
metrics = TetherMetrics(registry=registry)


def token_ok(token: str = Query("")) -> bool:
    """Let anyone in but `?token=nope`."""
    return token != "nope"


class Metered(WebSocketController):
    """The base of the app's controllers: metrics on, for every subclass."""

    metrics = metrics


class Echo(Metered):
    """Echo text; "boom" raises, "bye" closes with 4000, "quiet" answers nothing."""

    encoding = "text"
    allowed_origins = ["http://good.example"]
    subprotocols = ["chat.v1"]
    permissions = [token_ok]
    outbound_maxsize = 2

    async def on_receive(self, data: str) -> str | None:
        if data == "boom":
            raise RuntimeError("boom")
        if data == "bye":
            await self.websocket.close(4000, "bye")
            return None
        if data == "quiet":
            return None
        if data == "flood":
            await self.join("flood")
            for n in range(10):
                await self.publish("flood", str(n))
            return None
        return data


class Room(Metered):
    """`/rooms/{room}` with an int room: anything else refuses the handshake."""

    async def on_connect(self, room: int) -> None:
        pass


app = Starlette(
    routes=[
        WebSocketRoute("/echo", Echo),
        WebSocketRoute("/rooms/{room}", Room),
        Route("/metrics", metrics_app(metrics)),
    ]
)
