"""What a controller reads from the handshake: query parameters, headers, path types.

Signatures are read again here (the compiled plans keep closures, not
markers): every hook, every `permissions` callable, and, recursively, every
`Provide` dependency they ask for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tether.asyncapi.schemas import value_schema
from tether.di.compiler import RESERVED, type_hints
from tether.di.conversion import unwrap_annotated
from tether.di.markers import Header, Marker, Provide, Query, Required


@dataclass
class Handshake:
    """The values a controller reads when a client connects.

    `query` and `headers` map the wire name to `(schema, required)`;
    `path_types` maps a parameter name to the annotation a hook gave it.
    """

    query: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)
    headers: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)
    path_types: dict[str, Any] = field(default_factory=dict)


def read_handshake(controller: type) -> Handshake:
    """Collect the `Query`, `Header` and path parameters of a controller's hooks."""
    found = Handshake()
    seen: set[Any] = set()
    for func, is_method in _callables(controller):
        _read(func, is_method, found, seen)
    return found


def _callables(controller: type) -> Iterator[tuple[Callable[..., Any], bool]]:
    plan = controller._plan  # type: ignore[attr-defined]
    for hook in (plan.connect, plan.receive, plan.disconnect, *plan.routes.values()):
        if hook is not None:
            yield hook.func, True
    for permission in getattr(controller, "permissions", None) or ():
        if callable(permission):
            yield permission, False


def _read(call: Callable[..., Any], skip_first: bool, found: Handshake, seen: set[Any]) -> None:
    if call in seen:  # shared dependencies (and cycles, which the compiler refuses anyway)
        return
    seen.add(call)
    try:
        parameters = list(inspect.signature(call).parameters.values())
    except (TypeError, ValueError):
        return
    hints = hints_of(call)
    for parameter in parameters[1:] if skip_first else parameters:
        annotation = hints.get(parameter.name, parameter.annotation)
        base, meta = unwrap_annotated(annotation)
        marker, default = _marker_of(parameter.default, meta)
        if isinstance(marker, Provide):
            _read(marker.dependency, False, found, seen)
        elif isinstance(marker, (Query, Header)):
            if marker.default is not Required:
                default = marker.default
            required = default is inspect.Parameter.empty
            entry = (value_schema(base, default), required)
            if isinstance(marker, Header):
                name = (marker.alias or parameter.name.replace("_", "-")).lower()
                found.headers.setdefault(name, entry)
            else:
                found.query.setdefault(marker.alias or parameter.name, entry)
        elif marker is None and parameter.name not in RESERVED:
            found.path_types.setdefault(parameter.name, base)


def hints_of(call: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of a callable (`"return"` included), resolved one by one.

    `typing.get_type_hints` gives up on the whole callable when one
    annotation cannot be resolved; here only that one stays a string.
    """
    hints = type_hints(call)
    target = call.__init__ if isinstance(call, type) else call  # type: ignore[misc]
    raw = dict(getattr(target, "__annotations__", None) or {})
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    for name, annotation in raw.items():
        if name not in hints:
            hints[name] = _evaluate(annotation, namespace)
    return hints


def _evaluate(annotation: Any, namespace: dict[str, Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        # What typing.get_type_hints does for each annotation.
        return eval(annotation, namespace)
    except Exception:
        return annotation


def _marker_of(default: Any, meta: tuple[Any, ...]) -> tuple[Marker | None, Any]:
    if isinstance(default, Marker):
        return default, inspect.Parameter.empty
    for item in meta:
        if isinstance(item, Marker):
            return item, default
    return None, default
