"""Serve the AsyncAPI document, and a page that shows it, from the user's app.

The page (`page.html`) is plain HTML with a short script that renders the
embedded JSON: no CDN, so a saved copy still works offline.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tether.asyncapi.document import generate


class AsyncAPIDocs:
    """The document of an app, generated on first use and then cached.

    `source` is what `generate` takes; `None` means the app that serves the
    request (`scope["app"]`), so the routes can be listed in the app they
    describe. `serve_json` and `serve_page` are the two ASGI apps that
    `asyncapi_routes` mounts; mount them yourself for other routers.
    """

    def __init__(self, source: Any = None, **generate_kwargs: Any) -> None:
        self.source = source
        self.generate_kwargs = generate_kwargs
        self._json: bytes | None = None
        self._html: bytes | None = None

    def document(self, app: Any = None) -> dict[str, Any]:
        """The document as a dict (generated afresh; the served bytes are cached)."""
        source = self.source if self.source is not None else app
        if source is None:
            raise RuntimeError("AsyncAPIDocs has no source: pass an app or routes")
        return generate(source, **self.generate_kwargs)

    def json_bytes(self, app: Any = None) -> bytes:
        """The document as UTF-8 JSON, cached after the first call."""
        if self._json is None:
            text = json.dumps(self.document(app), ensure_ascii=False, indent=2)
            self._json = text.encode()
        return self._json

    def html_bytes(self, app: Any = None) -> bytes:
        """The HTML page with the document embedded, cached after the first call."""
        if self._html is None:
            document = json.loads(self.json_bytes(app))
            self._html = render_page(document).encode()
        return self._html

    async def serve_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI app: the document as `application/json`."""
        body = self.json_bytes(scope.get("app"))
        await _respond(scope, receive, send, body, "application/json")

    async def serve_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI app: the HTML page."""
        body = self.html_bytes(scope.get("app"))
        await _respond(scope, receive, send, body, "text/html; charset=utf-8")


def asyncapi_routes(
    app_or_routes: Any = None,
    *,
    path: str = "/asyncapi",
    route_class: Callable[[str, Any], Any] | None = None,
    **generate_kwargs: Any,
) -> list[Any]:
    """Routes serving the AsyncAPI document at `{path}.json` and a page at `path`.

    The document is generated on the first request and cached. Add the routes
    to the app they describe:

        app = Starlette(routes=[WebSocketRoute("/ws", Chat)])
        app.routes.extend(asyncapi_routes(app, title="Chat", version="1.0"))

    Args:
        app_or_routes: What `generate` reads; `None` (the default) reads the
            app serving the request.
        path: Where the page is served; the JSON is at `path + ".json"`.
        route_class: Builds one route from `(path, asgi_app)`. By default
            Starlette's `Route` (Starlette, FastAPI), or Lilya's `Path` when
            `app_or_routes` comes from Lilya.
        **generate_kwargs: `title`, `version`, `servers`, `description`.
    """
    if "title" not in generate_kwargs or "version" not in generate_kwargs:
        raise TypeError("asyncapi_routes() needs title= and version= (as generate() does)")
    docs = AsyncAPIDocs(app_or_routes, **generate_kwargs)
    make = route_class or _route_class_for(app_or_routes)
    path = "/" + path.strip("/")
    return [make(path + ".json", docs.serve_json), make(path, docs.serve_page)]


def _route_class_for(source: Any) -> Callable[[str, Any], Any]:
    items = source if isinstance(source, (list, tuple)) else [source]
    if any(type(item).__module__.partition(".")[0] == "lilya" for item in items):
        from lilya.routing import Path

        return lambda path, endpoint: Path(path, _asgi(endpoint))
    return lambda path, endpoint: Route(path, _asgi(endpoint), methods=["GET", "HEAD"])


def _asgi(serve: Callable[[Scope, Receive, Send], Any]) -> Any:
    """Wrap a bound method as an ASGI app object (routers call functions with a request)."""

    class Endpoint:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await serve(scope, receive, send)

    return Endpoint()


async def _respond(scope: Scope, receive: Receive, send: Send, body: bytes, media: str) -> None:
    if scope.get("method", "GET") not in ("GET", "HEAD"):
        response = Response(status_code=405, headers={"allow": "GET, HEAD"})
    else:
        response = Response(body, media_type=media)
    await response(scope, receive, send)


def render_page(document: dict[str, Any]) -> str:
    """The HTML page for a document: the JSON embedded, rendered by a short script."""
    embedded = (
        json.dumps(document, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    title = str(document.get("info", {}).get("title", "AsyncAPI"))
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _template().replace("{{title}}", escaped).replace("{{document}}", embedded)


@functools.cache
def _template() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
