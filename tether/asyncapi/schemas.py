"""JSON Schemas for message types and handshake parameters.

`SchemaRegistry.schema_for(T)` returns the schema of a type: small types
inline, named types (dataclasses, TypedDicts, pydantic models, msgspec
Structs, enums) as a `$ref` into `components.schemas`, which the registry
collects. Types are described by the library that validates them: pydantic
for anything that mentions a pydantic model, msgspec when it is installed,
else pydantic.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import re
import types
import typing
import uuid
from typing import Any, Literal, Union

from tether.controllers.codecs import UNTYPED, mentions_pydantic
from tether.di.conversion import strip_optional, unwrap_annotated

REF_PREFIX = "#/components/schemas/"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")

# Types whose schema needs no library.
_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "format": "binary"},
    type(None): {"type": "null"},
    dict: {"type": "object"},
    list: {"type": "array"},
    uuid.UUID: {"type": "string", "format": "uuid"},
    decimal.Decimal: {"type": "string", "format": "decimal"},
    datetime.datetime: {"type": "string", "format": "date-time"},
    datetime.date: {"type": "string", "format": "date"},
    datetime.time: {"type": "string", "format": "time"},
}


def component_name(name: str) -> str:
    """A name made safe for a components key (`^[A-Za-z0-9._-]+$`)."""
    return _UNSAFE.sub("_", name).strip("_") or "Schema"


def union_members(annotation: Any) -> tuple[Any, ...]:
    """The members of a top-level union without `None`; `(annotation,)` otherwise."""
    base = unwrap_annotated(annotation)[0]
    if typing.get_origin(base) in (Union, types.UnionType):
        return tuple(a for a in typing.get_args(base) if a is not type(None))
    return (annotation,)


def is_discriminated(annotation: Any) -> bool:
    """Whether `Annotated[A | B, Field(discriminator=...)]`: keep the union whole."""
    return any(getattr(m, "discriminator", None) for m in unwrap_annotated(annotation)[1])


def type_name(annotation: Any) -> str:
    """A readable name for a type: `Ack`, `list_Ack`, `int`."""
    base = unwrap_annotated(annotation)[0]
    if isinstance(base, type) and not typing.get_args(base):
        return base.__name__
    origin = typing.get_origin(base)
    args = "_".join(type_name(a) for a in typing.get_args(base))
    head = getattr(origin, "__name__", None) or getattr(base, "_name", None) or "value"
    return component_name(f"{head}_{args}" if args else head)


class SchemaRegistry:
    """Builds schemas and collects the named ones for `components.schemas`."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def schema_for(self, annotation: Any) -> dict[str, Any]:
        """The schema of `annotation`: a `$ref` for a named type, else inline.

        Raises `TypeError` (with the reason) for a type neither library can
        describe, such as an unresolved forward reference.
        """
        base = unwrap_annotated(annotation)[0]
        if base in UNTYPED:
            return {}
        if isinstance(base, (str, typing.ForwardRef)):
            raise TypeError(
                f"the annotation {base!r} is an unresolved forward reference; "
                "define the type at module level"
            )
        simple = _SIMPLE.get(base)
        if simple is not None:
            return dict(simple)
        if not mentions_pydantic(annotation):
            try:
                return self._from_msgspec(annotation)
            except (ImportError, TypeError):
                pass  # not a type msgspec knows: pydantic may
        try:
            return self._from_pydantic(annotation)
        except ImportError:
            return {"description": f"A {type_name(annotation)} (install msgspec or pydantic)."}
        except Exception as exc:
            raise TypeError(f"cannot describe {annotation!r}: {exc}") from exc

    def _from_msgspec(self, annotation: Any) -> dict[str, Any]:
        import msgspec

        (schema,), components = msgspec.json.schema_components(
            [annotation], ref_template=REF_PREFIX + "{name}"
        )
        return self._merge(schema, components)

    def _from_pydantic(self, annotation: Any) -> dict[str, Any]:
        from pydantic import TypeAdapter

        schema = TypeAdapter(annotation).json_schema(ref_template=REF_PREFIX + "{model}")
        components = schema.pop("$defs", {})
        base = unwrap_annotated(annotation)[0]
        if isinstance(base, type) and schema.get("type") == "object" and "title" in schema:
            # A model: name it like its $defs would, so it can be shared.
            name = base.__name__
            components[name] = schema
            schema = {"$ref": REF_PREFIX + name}
        return self._merge(schema, components)

    def _merge(self, schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
        """Add a batch of components, renaming those whose name is taken by another schema."""
        renames: dict[str, str] = {}
        for name, component in components.items():
            wanted = component_name(name)
            final, n = wanted, 1
            while final in self.components and self.components[final] != _adapt(component, {}):
                n += 1
                final = f"{wanted}_{n}"
            renames[name] = final
        for name, component in components.items():
            self.components.setdefault(renames[name], _adapt(component, renames))
        return _adapt(schema, renames)


def _adapt(node: Any, renames: dict[str, str]) -> Any:
    """Rewrite `$ref`s to the final names and pydantic's OpenAPI-style `discriminator`.

    AsyncAPI's `discriminator` is a property name (a string), not an object.
    """
    if isinstance(node, list):
        return [_adapt(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
            name = value[len(REF_PREFIX) :]
            out[key] = REF_PREFIX + renames.get(name, component_name(name))
        elif key == "discriminator" and isinstance(value, dict):
            out[key] = value.get("propertyName")
        else:
            out[key] = _adapt(value, renames)
    return out


# -- handshake values (query parameters, headers, path parameters) ------------------


def value_schema(annotation: Any, default: Any = inspect.Parameter.empty) -> dict[str, Any]:
    """The schema of a query, header or path value converted to `annotation`."""
    base = strip_optional(unwrap_annotated(annotation)[0])
    schema: dict[str, Any]
    origin = typing.get_origin(base)
    if base in UNTYPED:
        schema = {"type": "string"}
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        schema = _enum_schema([member.value for member in base])
    elif origin is Literal:
        schema = _enum_schema(list(typing.get_args(base)))
    elif origin in (list, tuple, set, frozenset) or base in (list, tuple, set, frozenset):
        args = typing.get_args(base)
        schema = {"type": "array", "items": value_schema(args[0]) if args else {"type": "string"}}
    elif base in _SIMPLE and base not in (dict, list, type(None)):
        schema = dict(_SIMPLE[base])
    else:
        schema = {"type": "string"}
    if default is not inspect.Parameter.empty and default is not None and _is_json(default):
        schema["default"] = default.value if isinstance(default, enum.Enum) else default
    return schema


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": values}
    if values and all(isinstance(v, str) for v in values):
        schema["type"] = "string"
    elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        schema["type"] = "integer"
    return schema


def _is_json(value: Any) -> bool:
    if isinstance(value, enum.Enum):
        value = value.value
    if dataclasses.is_dataclass(value):
        return False
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
