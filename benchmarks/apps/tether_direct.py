"""tether served directly: the same controllers, routed by hand like the raw ASGI floor.

A controller is itself an ASGI app, so an app with few endpoints needs no
router. This isolates tether's own cost from Starlette's router and
middleware.
"""

from __future__ import annotations

from typing import Any

from benchmarks.apps.tether_controllers import (
    Bare,
    Graph,
    JsonEcho,
    OneDependency,
    TextEcho,
    TypedEcho,
)

_ROUTES = {"/echo": TextEcho, "/json": JsonEcho, "/typed": TypedEcho}
_PREFIX_ROUTES = {"/graph/": Graph, "/bare/": Bare, "/scoped/": OneDependency}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route a websocket scope by path to its controller, with `room` as a path param."""
    if scope["type"] != "websocket":
        return
    path = scope["path"]
    controller = _ROUTES.get(path)
    if controller is None:
        prefix = path[: path.find("/", 1) + 1]
        controller = _PREFIX_ROUTES.get(prefix)
        if controller is None:
            await send({"type": "websocket.close", "code": 1000})
            return
        scope = {**scope, "path_params": {"room": path[len(prefix) :]}}
    await controller(scope, receive, send)
