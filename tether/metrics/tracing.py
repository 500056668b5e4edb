"""OpenTelemetry spans, one per connection, where `opentelemetry-api` is installed.

Without the package every method here is a no-op (`enabled` is False), so a
class that asks for spans still serves its connections. The span covers
the whole session, handshake to teardown, and is the current span while the
hooks run, so spans a hook starts are its children.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import Scope

__all__ = ["ConnectionTracing"]

logger = logging.getLogger("tether")


class ConnectionTracing:
    """Starts and ends the span of each connection of a metered controller.

    `tracer_provider`: the OpenTelemetry `TracerProvider` to use (default:
    the global one, set by the SDK or `opentelemetry-instrument`). The trace
    context of the handshake (`traceparent` header) is its parent.
    """

    __slots__ = ("_attach", "_detach", "_extract", "_kind", "_set_in", "_status", "_tracer")

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            logger.warning("tether spans were asked for, but opentelemetry-api is not installed")
            self._tracer = None
            return
        self._tracer = trace.get_tracer("tether", tracer_provider=tracer_provider)
        self._extract = propagate.extract
        self._attach, self._detach = context.attach, context.detach
        self._set_in = trace.set_span_in_context
        self._kind = trace.SpanKind.SERVER
        self._status = trace.Status, trace.StatusCode.ERROR

    @property
    def enabled(self) -> bool:
        """Whether spans are made (False when opentelemetry-api is missing)."""
        return self._tracer is not None

    def start(self, scope: Scope, controller: str) -> tuple[Any, object] | None:
        """Start the connection's span and make it current; None without OpenTelemetry."""
        if self._tracer is None:
            return None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        attributes: dict[str, Any] = {
            "tether.controller": controller,
            "network.protocol.name": "websocket",
            "url.path": scope.get("path", ""),
            "url.scheme": scope.get("scheme", "ws"),
        }
        client = scope.get("client")
        if client:
            attributes["client.address"], attributes["client.port"] = client[0], client[1]
        if "user-agent" in headers:
            attributes["user_agent.original"] = headers["user-agent"]
        span = self._tracer.start_span(
            f"websocket {controller}",
            context=self._extract(headers),
            kind=self._kind,
            attributes=attributes,
        )
        return span, self._attach(self._set_in(span))

    def failed(self, started: tuple[Any, object], exc: BaseException) -> None:
        """A hook raised: the span records the exception and an error status."""
        span = started[0]
        status, error = self._status
        span.record_exception(exc)
        span.set_status(status(error, type(exc).__name__))

    def end(self, started: tuple[Any, object], attributes: dict[str, Any]) -> None:
        """Set the session's outcome on the span, end it, and restore the context."""
        span, token = started
        span.set_attributes(attributes)
        span.end()
        try:
            self._detach(token)
        except Exception:  # ended in another context (a cancelled task): nothing to restore
            logger.debug("tether span context could not be detached", exc_info=True)
