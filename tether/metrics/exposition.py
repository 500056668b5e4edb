"""`metrics_app`: an ASGI app that serves a registry in Prometheus' text format."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from tether.close_codes import NORMAL_CLOSURE
from tether.metrics.prometheus import TetherMetrics, _prometheus

__all__ = ["MetricsApp", "metrics_app"]


def metrics_app(registry: TetherMetrics | Any = None) -> MetricsApp:
    """An ASGI app answering `GET` with the metrics of `registry`, to mount at `/metrics`.

    `registry` is a `TetherMetrics`, a `prometheus_client.CollectorRegistry`,
    or None for prometheus_client's default registry. The answer is in the
    format the scraper asks for in `Accept` (OpenMetrics or the classic text
    format); `?name[]=...` selects metrics by name. Other methods get 405; a
    WebSocket is refused (403); a lifespan scope is completed, so the app may
    also be served on its own port.

    ```python
    app = Starlette(routes=[Route("/metrics", metrics_app(metrics)), ...])
    ```
    """
    _prometheus()
    if isinstance(registry, TetherMetrics):
        registry = registry.registry
    elif registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    return MetricsApp(registry)


class MetricsApp:
    """The ASGI app `metrics_app` returns (a class, so routers mount it as an app)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client.exposition import choose_encoder

        self.registry = registry
        self._choose_encoder = choose_encoder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one scope: a scrape, a refusal, or the lifespan."""
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": NORMAL_CLOSURE})
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"text/plain; charset=utf-8", b"Method Not Allowed\n")
            return
        accept = b",".join(v for k, v in scope.get("headers", ()) if k.lower() == b"accept")
        encode, content_type = self._choose_encoder(accept.decode("latin-1"))
        names = _names(scope.get("query_string", b""))
        source = self.registry.restricted_registry(names) if names else self.registry
        await _respond(send, 200, content_type.encode(), encode(source), head=method == "HEAD")


def _names(query: bytes) -> list[str]:
    from urllib.parse import parse_qs

    return parse_qs(query.decode("latin-1")).get("name[]", [])


async def _respond(
    send: Send, status: int, content_type: bytes, body: bytes, *, head: bool = False
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
