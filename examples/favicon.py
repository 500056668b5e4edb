"""The examples' `/favicon.ico`: answered with 204 No Content.

A browser that opens an example's page (or any URL of it) also asks for
`/favicon.ico`; without a route that is a 404 in the server's log on every
visit. The examples have no icon, so they say so with an empty answer.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def no_icon(request: Request) -> Response:
    """An empty 204 answer: there is no icon, and nothing went wrong."""
    return Response(status_code=204)


def favicon_route() -> Route:
    """The `/favicon.ico` route to add to an example's app."""
    return Route("/favicon.ico", no_icon, methods=["GET", "HEAD"])
