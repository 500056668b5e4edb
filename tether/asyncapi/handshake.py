"""What a controller reads from the handshake: query parameters, headers, path types.

Read from the controller's description (`describe_controller`): every hook,
every `permissions` callable, and, recursively, every dependency they ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.asyncapi.schemas import value_schema
from tether.controllers.description import ParameterInfo, describe_controller
from tether.di.conversion import unwrap_annotated


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
    described = describe_controller(controller)
    for hook in (*described.hooks, *described.permissions):
        _read(hook.parameters, found, seen)
    return found


def _read(parameters: tuple[ParameterInfo, ...], found: Handshake, seen: set[Any]) -> None:
    for parameter in parameters:
        dependency = parameter.dependency
        if dependency is not None:
            if dependency.call not in seen:  # a dependency shared by several hooks
                seen.add(dependency.call)
                _read(dependency.parameters, found, seen)
            continue
        base = unwrap_annotated(parameter.annotation)[0]
        if parameter.source in ("query", "header"):
            entry = (value_schema(base, parameter.default), parameter.required)
            values = found.headers if parameter.source == "header" else found.query
            values.setdefault(parameter.key, entry)
        elif parameter.source == "path":
            found.path_types.setdefault(parameter.name, base)
