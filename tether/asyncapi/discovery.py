"""Find the WebSocket controllers an app serves, and the path each is mounted at.

Routes are read by duck typing, so one walker serves Starlette, FastAPI and
Lilya (and what is built on them): a route with an `endpoint`, `handler` or
`app` that is a `WebSocketController` subclass is a channel; a route with
sub-`routes` (`Mount`, `Include`, `Host`, a router included by FastAPI) is
walked with its path (or its include prefix) as a prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.controllers import WebSocketController

# `{name}` or `{name:convertor}` in a route path.
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


@dataclass(frozen=True)
class Endpoint:
    """One controller mounted at one path.

    `address` is the path with convertors stripped (`/ws/{id:int}` becomes
    `/ws/{id}`); `convertors` maps each path parameter to its convertor name
    (`"str"` when the path named none).
    """

    address: str
    controller: type[WebSocketController]
    convertors: dict[str, str] = field(default_factory=dict)


def find_endpoints(app_or_routes: Any) -> list[Endpoint]:
    """Every controller reachable from an app, a router or a list of routes.

    Accepts a Starlette, FastAPI or Lilya app (or anything with `.routes`), a
    sequence of routes (Starlette `WebSocketRoute`, Lilya `WebSocketPath`,
    `Mount`, `Include`, ...) and `(path, ControllerClass)` pairs. Routes whose
    endpoint is not a controller are skipped.
    """
    found: list[Endpoint] = []
    _walk(_routes_of(app_or_routes), "", found, set())
    return found


def split_path(path: str) -> tuple[str, dict[str, str]]:
    """`/a/{id:int}` -> (`/a/{id}`, {"id": "int"})."""
    convertors: dict[str, str] = {}

    def strip(match: re.Match[str]) -> str:
        convertors[match.group(1)] = match.group(2) or "str"
        return "{" + match.group(1) + "}"

    return _PATH_PARAM.sub(strip, path), convertors


def is_controller(value: Any) -> bool:
    """Whether `value` is a `WebSocketController` subclass."""
    return isinstance(value, type) and issubclass(value, WebSocketController)


def _routes_of(source: Any) -> Iterable[Any]:
    if isinstance(source, (list, tuple)) and not _is_pair(source):
        return source
    routes = getattr(source, "routes", None)
    if routes is None:
        raise TypeError(
            "generate() needs an app with .routes (Starlette, FastAPI, Lilya), a list of "
            f"routes or (path, controller) pairs; got {source!r}"
        )
    return routes


def _walk(routes: Iterable[Any], prefix: str, found: list[Endpoint], seen: set[int]) -> None:
    for route in routes:
        if _is_pair(route):
            _add(prefix, route[0], route[1], found)
            continue
        path = getattr(route, "path", "") or ""
        target = _controller_of(route)
        if target is not None:
            _add(prefix, path, target, found)
            continue
        children = getattr(route, "routes", None)
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI's include_router keeps the router and its prefix
            children = getattr(included, "routes", None)
            path = getattr(getattr(route, "include_context", None), "prefix", "") or ""
        if children and id(route) not in seen:
            seen.add(id(route))  # a router included twice is still walked once per mount
            _walk(children, _join(prefix, path), found, seen)
            seen.discard(id(route))


def _controller_of(route: Any) -> type[WebSocketController] | None:
    for attribute in ("endpoint", "handler", "app"):
        value = getattr(route, attribute, None)
        if is_controller(value):
            return value
    return None


def _add(prefix: str, path: str, controller: Any, found: list[Endpoint]) -> None:
    if not is_controller(controller):
        raise TypeError(f"({path!r}, {controller!r}): the second item must be a controller class")
    address, convertors = split_path(_join(prefix, path) or "/")
    found.append(Endpoint(address, controller, convertors))


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    return prefix.rstrip("/") + "/" + path.lstrip("/")


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], type)
    )
