"""Controllers: the class users subclass, its dispatch loop, `@on` routing and codecs.

`describe_controller` gives a read-only description of a controller class
(its hooks, events, parameters and `sends`), for documentation and tooling.
"""

from tether.controllers.codecs import DecodeError
from tether.controllers.controller import WebSocketController
from tether.controllers.declared_groups import Group
from tether.controllers.description import (
    ControllerInfo,
    DependencyInfo,
    HookInfo,
    ParameterInfo,
    describe_controller,
)
from tether.controllers.errors import WebSocketDisconnect, WebSocketException
from tether.controllers.lifespan import lifespan
from tether.controllers.limits import RateLimit
from tether.controllers.requests import CallClosed, CallError, CallTimeout, RequestError
from tether.controllers.routing import on
from tether.controllers.websocket import WebSocket, WebSocketState

__all__ = [
    "CallClosed",
    "CallError",
    "CallTimeout",
    "ControllerInfo",
    "DecodeError",
    "DependencyInfo",
    "Group",
    "HookInfo",
    "ParameterInfo",
    "RateLimit",
    "RequestError",
    "WebSocket",
    "WebSocketController",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "describe_controller",
    "lifespan",
    "on",
]
