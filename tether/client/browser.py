"""The browser client, `tether.js` (and its `tether.d.ts`), shipped in the Python package."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["BROWSER_CLIENT", "BROWSER_TYPES", "client_route"]

BROWSER_CLIENT = Path(__file__).with_name("tether.js")
"""Where `tether.js` lives inside the installed package (to copy it into a build)."""

BROWSER_TYPES = Path(__file__).with_name("tether.d.ts")
"""Its TypeScript declarations: put them beside your copy, or point `paths` at them."""


def client_route(path: str = "/tether.js") -> Route:
    """A Starlette route that serves `tether.js` at `path`.

    ```python
    app = Starlette(routes=[client_route(), WebSocketRoute("/ws", Chat)])
    ```

    A page then imports it with `import { TetherClient } from "/tether.js"`.
    The file is read once, when the route is made; it goes out with
    `cache-control: no-cache`, so a new tether version reaches browsers at once.
    """
    body = BROWSER_CLIENT.read_bytes()

    async def serve(request: Request) -> Response:
        return Response(
            body, media_type="text/javascript; charset=utf-8", headers={"cache-control": "no-cache"}
        )

    return Route(path, serve, methods=["GET", "HEAD"], name="tether.js")
