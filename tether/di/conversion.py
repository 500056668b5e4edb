"""Converters from request strings (query, header, cookie, path) to annotations.

`compile_converter` inspects an annotation once and returns a plain function;
converting a value later is one call with no type inspection.
"""

from __future__ import annotations

import datetime
import enum
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Union
from urllib.parse import unquote_plus

Converter = Callable[[Any], Any]

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_LIST_ORIGINS = (list, tuple, set, frozenset, Sequence)


def identity(value: Any) -> Any:
    """The converter of `str` (and unannotated) values: the value itself."""
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean")


def unwrap_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """Split `Annotated[T, *meta]` into `(T, meta)`; other annotations pass through."""
    if typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        return args[0], tuple(args[1:])
    return annotation, ()


def strip_optional(annotation: Any) -> Any:
    """`T | None` and `Optional[T]` become `T`; anything else is returned as is."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        if len(args) < len(typing.get_args(annotation)):
            return Union[tuple(args)]  # noqa: UP007 - built from a runtime tuple
    return annotation


def is_list_annotation(annotation: Any) -> bool:
    """Whether the annotation asks for every value of a repeated key."""
    annotation = strip_optional(unwrap_annotated(annotation)[0])
    origin = typing.get_origin(annotation) or annotation
    return origin in _LIST_ORIGINS


def compile_converter(annotation: Any) -> Converter:
    """Build a function turning a request string into `annotation`.

    For `list[T]` and friends the returned function takes the list of raw
    values. The function raises `ValueError` or `TypeError` on bad input.
    """
    annotation = strip_optional(unwrap_annotated(annotation)[0])
    if annotation in (inspect.Parameter.empty, Any, str, object):
        return identity
    origin = typing.get_origin(annotation)
    if origin in _LIST_ORIGINS:
        args = typing.get_args(annotation)
        item = compile_converter(args[0] if args else str)
        build = list if origin in (list, Sequence) else origin
        return lambda values: build([item(v) for v in values])
    if origin in (Union, types.UnionType):
        return _union_converter([compile_converter(a) for a in typing.get_args(annotation)])
    if origin is typing.Literal:
        return _literal_converter(typing.get_args(annotation))
    if annotation is bool:
        return _to_bool
    if is_class(annotation) and issubclass(annotation, enum.Enum):
        return _enum_converter(annotation)
    if annotation in (datetime.datetime, datetime.date, datetime.time):
        return _exact_or(annotation, annotation.fromisoformat)
    if is_class(annotation):
        return _exact_or(annotation, annotation)
    raise TypeError(f"cannot convert request values to {annotation!r}")


def _exact_or(cls: type, build: Callable[[Any], Any]) -> Converter:
    # Path convertors (`{id:int}`, `{id:uuid}`) hand over already-typed values.
    def convert(value: Any) -> Any:
        return value if isinstance(value, cls) else build(value)

    return convert


def _union_converter(converters: list[Converter]) -> Converter:
    def convert(value: Any) -> Any:
        for one in converters:
            try:
                return one(value)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"{value!r} matches none of the allowed types")

    return convert


def _literal_converter(choices: tuple[Any, ...]) -> Converter:
    by_text = {str(c.value if isinstance(c, enum.Enum) else c): c for c in choices}

    def convert(value: Any) -> Any:
        try:
            return by_text[str(value)]
        except KeyError:
            raise ValueError(f"{value!r} is not one of {sorted(by_text)}") from None

    return convert


def _enum_converter(cls: type[enum.Enum]) -> Converter:
    members = {str(m.value): m for m in cls}

    def convert(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return members[str(value)]
        except KeyError:
            raise ValueError(f"{value!r} is not one of {sorted(members)}") from None

    return convert


def parse_query_string(raw: bytes) -> dict[str, list[str]]:
    """Every value of every key of a query string, in order (blank values kept).

    Equivalent to Starlette's `QueryParams` for lookups, at a fraction of the
    cost: most keys and values need no unquoting at all.
    """
    values: dict[str, list[str]] = {}
    if not raw:
        return values
    for part in raw.decode("latin-1").split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        found = values.get(key)
        if found is None:
            values[key] = [value]
        else:
            found.append(value)
    return values


def is_class(annotation: Any) -> bool:
    """Whether `annotation` is a class that `issubclass` accepts.

    On Python 3.10 `list[int]` passes `isinstance(..., type)`, yet
    `issubclass` refuses it.
    """
    return isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias)
