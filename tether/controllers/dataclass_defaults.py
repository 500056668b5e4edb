"""Dataclasses decoded by msgspec, made whole: every field in the instance's `__dict__`.

msgspec leaves a field with a plain default out of a decoded dataclass's
`__dict__` when the message omits it (the class attribute answers reads),
and its encoder, which walks `__dict__`, then omits the field: a dataclass
decoded from a message and sent back would lose its defaults. A filler,
built once per hook from the annotation, puts them back after decoding.
Only hooks whose `data` holds such a dataclass pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect as types

Filler = Callable[[Any], None]


def whole(decode: Callable[[Any], Any], annotation: Any) -> Callable[[Any], Any]:
    """`decode` (msgspec's, into `annotation`), then every dataclass in the value made whole.

    Returns `decode` itself when no dataclass in `annotation` has a plain default.
    """
    info = types.type_info(annotation)
    fill = _filler(info, {})
    if fill is None:
        return decode
    if isinstance(info, types.DataclassType) and not _inner(info, {}):
        # The common shape, a flat dataclass: no call per message beyond msgspec's.
        defaults = _defaults(info)
        complete = len(info.fields)

        def decode_flat(raw: Any) -> Any:
            value = decode(raw)
            own = value.__dict__
            if len(own) < complete:  # the message left a field out
                for name, default in defaults:
                    if name not in own:
                        own[name] = default  # the object the constructor would share too
            return value

        return decode_flat

    def decode_whole(raw: Any) -> Any:
        value = decode(raw)
        fill(value)
        return value

    return decode_whole


def _filler(info: Any, memo: dict[int, list[Filler | None]]) -> Filler | None:
    key = id(info)
    if key in memo:  # a recursive type: resolve the filler once it is built
        cell = memo[key]
        return lambda value: cell[0](value) if cell[0] is not None else None
    cell = memo[key] = [None]
    cell[0] = filler = _build(info, memo)
    return filler


def _build(info: Any, memo: dict[int, list[Filler | None]]) -> Filler | None:
    if isinstance(info, types.Metadata):
        return _filler(info.type, memo)
    if isinstance(info, (types.DataclassType, types.StructType, types.TypedDictType)):
        return _record_filler(info, memo)
    if isinstance(info, (types.ListType, types.SetType, types.FrozenSetType, types.VarTupleType)):
        item = _filler(info.item_type, memo)
        return None if item is None else _each(item)
    if isinstance(info, types.TupleType):
        items = [_filler(t, memo) for t in info.item_types]
        return _each_of(items) if any(items) else None
    if isinstance(info, types.DictType):
        value = _filler(info.value_type, memo)
        return None if value is None else _each_value(value)
    if isinstance(info, types.UnionType):
        alternatives = [f for f in (_filler(t, memo) for t in info.types) if f is not None]
        return _all(alternatives) if alternatives else None
    return None


def _defaults(info: Any) -> tuple[tuple[str, Any], ...]:
    """The fields msgspec leaves out of a decoded instance when the message does."""
    if not isinstance(info, types.DataclassType) or "__slots__" in vars(info.cls):
        return ()  # a Struct, a TypedDict or a slotted dataclass gets every field set
    # Fields with a default factory are set by msgspec; plain defaults are not.
    return tuple((f.name, f.default) for f in info.fields if f.default is not msgspec.NODEFAULT)


def _inner(info: Any, memo: dict[int, list[Filler | None]]) -> tuple[tuple[str, Filler], ...]:
    """The fields whose values hold dataclasses to fill in turn."""
    return tuple((f.name, sub) for f in info.fields if (sub := _filler(f.type, memo)) is not None)


def _record_filler(info: Any, memo: dict[int, list[Filler | None]]) -> Filler | None:
    cls = info.cls
    defaults = _defaults(info)
    inner = _inner(info, memo)
    if not defaults and not inner:
        return None
    if isinstance(info, types.TypedDictType):

        def fill_dict(value: Any) -> None:
            if type(value) is dict:
                for name, sub in inner:
                    if name in value:
                        sub(value[name])

        return fill_dict

    complete = len(info.fields)

    def fill(value: Any) -> None:
        if type(value) is not cls:  # another alternative of a union
            return
        if defaults:
            own = value.__dict__
            if len(own) < complete:  # the message left some field out
                for name, default in defaults:
                    if name not in own:
                        own[name] = default
        for name, sub in inner:
            sub(getattr(value, name))

    return fill


def _each(item: Filler) -> Filler:
    def fill(value: Any) -> None:
        if isinstance(value, (list, tuple, set, frozenset)):
            for one in value:
                item(one)

    return fill


def _each_of(items: list[Filler | None]) -> Filler:
    def fill(value: Any) -> None:
        if isinstance(value, tuple):
            for one, item in zip(value, items, strict=False):
                if item is not None:
                    item(one)

    return fill


def _each_value(item: Filler) -> Filler:
    def fill(value: Any) -> None:
        if isinstance(value, dict):
            for one in value.values():
                item(one)

    return fill


def _all(fillers: list[Filler]) -> Filler:
    def fill(value: Any) -> None:
        for one in fillers:
            one(value)

    return fill
