"""`metrics_app`: an ASGI app that serves a registry in Prometheus' text format."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tether.metrics.prometheus import TetherMetrics, _prometheus

__all__ = ["metrics_app"]


def metrics_app(registry: TetherMetrics | Any = None) -> ASGIApp:
    """An ASGI app answering `GET` with the metrics of `registry`, to mount at `/metrics`.

    `registry` is a `TetherMetrics`, a `prometheus_client.CollectorRegistry`,
    or None for prometheus_client's default registry. The answer is in the
    format the scraper asks for in `Accept` (OpenMetrics or the classic text
    format); `?name[]=...` selects metrics by name. Other methods get 405; a
    WebSocket is refused (403); a lifespan scope is completed, so the app may
    also be served on its own port.

    ```python
    app = Starlette(routes=[Mount("/metrics", metrics_app(metrics)), ...])
    ```
    """
    prometheus = _prometheus()
    from prometheus_client.exposition import choose_encoder

    if isinstance(registry, TetherMetrics):
        registry = registry.registry
    elif registry is None:
        registry = prometheus.REGISTRY

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
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
            await send({"type": "websocket.close", "code": 1000})
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"text/plain; charset=utf-8", b"Method Not Allowed\n")
            return
        accept = b",".join(v for k, v in scope.get("headers", ()) if k.lower() == b"accept")
        encode, content_type = choose_encoder(accept.decode("latin-1"))
        names = _names(scope.get("query_string", b""))
        source = registry.restricted_registry(names) if names else registry
        await _respond(send, 200, content_type.encode(), encode(source), head=method == "HEAD")

    return app


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
