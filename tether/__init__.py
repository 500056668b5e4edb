"""tether: class-based WebSocket controllers with dependency injection, for any ASGI app."""

from tether.controllers import (
    DecodeError,
    RateLimit,
    WebSocket,
    WebSocketController,
    WebSocketDisconnect,
    WebSocketException,
    WebSocketState,
    lifespan,
    on,
)
from tether.di import ConfigurationError, Cookie, Header, Provide, Query, override

__all__ = [
    "ConfigurationError",
    "Cookie",
    "DecodeError",
    "Header",
    "Provide",
    "Query",
    "RateLimit",
    "WebSocket",
    "WebSocketController",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "lifespan",
    "on",
    "override",
]
