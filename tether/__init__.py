"""tether: class-based WebSocket controllers with dependency injection, for any ASGI app."""

from tether.controllers import (
    CallClosed,
    CallError,
    CallTimeout,
    DecodeError,
    Group,
    RateLimit,
    RequestError,
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
    "CallClosed",
    "CallError",
    "CallTimeout",
    "ConfigurationError",
    "Cookie",
    "DecodeError",
    "Group",
    "Header",
    "Provide",
    "Query",
    "RateLimit",
    "RequestError",
    "WebSocket",
    "WebSocketController",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "lifespan",
    "on",
    "override",
]
