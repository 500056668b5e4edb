"""Controllers: the class users subclass, its dispatch loop, `@on` routing and codecs."""

from tether.controllers.codecs import DecodeError
from tether.controllers.controller import WebSocketController
from tether.controllers.errors import WebSocketDisconnect, WebSocketException
from tether.controllers.lifespan import lifespan
from tether.controllers.limits import RateLimit
from tether.controllers.routing import on
from tether.controllers.websocket import WebSocket, WebSocketState

__all__ = [
    "DecodeError",
    "RateLimit",
    "WebSocket",
    "WebSocketController",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "lifespan",
    "on",
]
