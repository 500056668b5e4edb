"""Codecs: ASGI messages in, `data` out; return values in, ASGI messages out.

`compile_decoder` looks at a hook's `encoding` and `data` annotation once and
returns a function from an ASGI `websocket.receive` message to `data`. Typed
data is validated by the library the type belongs to (msgspec for Structs,
pydantic for models, msgspec or else pydantic for dataclasses, TypedDicts,
containers and unions), with the validator built once per hook.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from tether.close_codes import INVALID_PAYLOAD, UNSUPPORTED_DATA
from tether.di.conversion import identity, unwrap_annotated
from tether.frames import loads

try:
    import msgspec
    import msgspec.inspect
except ImportError:  # pragma: no cover - the msgspec extra is optional
    msgspec = None  # type: ignore[assignment]

Message = dict[str, Any]
Decoder = Callable[[Message], Any]

ENCODINGS = ("text", "bytes", "json", None)

# What parsers and validators raise for input that cannot become `data`. msgspec
# and the standard library raise `RecursionError` for JSON nested deeper than the
# interpreter's stack allows: that is the client's input, not a bug of the server.
DECODE_FAILURES = (ValueError, RecursionError)


class DecodeError(Exception):
    """A received message that cannot become `data`.

    `code` is the close code the default `on_decode_error` closes with:
    1003 for a frame of the wrong kind (or a message no `@on` handler takes),
    1007 for malformed JSON (also JSON nested too deeply to parse) or data
    that fails validation. The underlying error, if any, is the exception's
    `__cause__`.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- decoding ---------------------------------------------------------------------

UNTYPED = (inspect.Parameter.empty, Any, object)
"""Annotations that say nothing about a value: it is taken as it comes."""


def compile_decoder(encoding: str | None, annotation: Any) -> Decoder:
    """Build the function that turns a received message into `data`.

    Raises `TypeError` when `annotation` is a type no installed library can
    validate.
    """
    base = (
        unwrap_annotated(annotation)[0] if annotation is not inspect.Parameter.empty else annotation
    )
    if encoding == "text" or (encoding is None and base is str):
        frame = text_frame
    elif encoding == "bytes" or (encoding is None and base is bytes):
        frame = _bytes_frame
    else:
        frame = _any_frame
    if base in UNTYPED or base is str or base is bytes or _is_str_or_bytes(base):
        if encoding == "json":
            return _parsing(frame, loads)
        return frame
    return _parsing(frame, compile_validator(annotation))


def _is_str_or_bytes(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and bool(args)
        and set(args) <= {str, bytes}
    )


def compile_validator(annotation: Any) -> Callable[[str | bytes], Any]:
    """Parse JSON straight into `annotation`, validating it."""
    base = unwrap_annotated(annotation)[0]
    if base in (dict, list):
        return _checking(loads, base)
    backend = _backend_for(annotation)
    if backend == "msgspec":
        return _filling(msgspec.json.Decoder(annotation).decode, annotation)
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).validate_json


def compile_converter(annotation: Any) -> Callable[[Any], Any]:
    """Validate an already-parsed JSON value into `annotation` (for `@on` handlers)."""
    if annotation is inspect.Parameter.empty:
        return identity
    base = unwrap_annotated(annotation)[0]
    if base in UNTYPED:
        return identity
    if base in (dict, list, str, int, float, bool):
        return _of_kind(base)
    if _backend_for(annotation) == "msgspec":
        return _filling(lambda value: msgspec.convert(value, annotation), annotation)
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).validate_python


def _filling(decode: Callable[[Any], Any], annotation: Any) -> Callable[[Any], Any]:
    """`decode`, then the dataclass defaults msgspec left out put back (see dataclass_defaults)."""
    from tether.controllers.dataclass_defaults import whole

    return whole(decode, annotation)


def _backend_for(annotation: Any) -> str:
    if mentions_pydantic(annotation):
        return "pydantic"
    plain: list[type] = []
    if msgspec is not None:
        try:
            msgspec.json.Decoder(annotation)
            # msgspec accepts any class, and then fails on every message without a dec_hook.
            plain = _custom_types(msgspec.inspect.type_info(annotation))
            if not plain:
                return "msgspec"
        except TypeError:
            pass  # e.g. a union of dataclasses: pydantic can discriminate it
    try:
        from pydantic import TypeAdapter

        TypeAdapter(annotation)
    except ImportError:
        raise TypeError(
            f"validating {annotation!r} needs msgspec or pydantic: "
            "pip install 'tether[msgspec]' or 'tether[pydantic]'"
        ) from None
    except Exception as exc:
        if plain:
            raise TypeError(
                f"no installed library can validate messages into {plain[0].__qualname__}, "
                "a plain class; make it a dataclass, TypedDict, msgspec Struct or pydantic model"
            ) from exc
        raise TypeError(f"cannot validate messages into {annotation!r}: {exc}") from exc
    return "pydantic"


def _custom_types(info: Any, seen: set[int] | None = None) -> list[type]:
    """The classes in a msgspec type description that msgspec cannot decode by itself."""
    seen = set() if seen is None else seen
    if id(info) in seen:  # a recursive type
        return []
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return [info.cls]
    found = []
    for name in getattr(info, "__struct_fields__", ()):
        value = getattr(info, name)
        for part in value if isinstance(value, tuple) else (value,):
            if isinstance(part, msgspec.inspect.Field):
                part = part.type
            if isinstance(part, msgspec.inspect.Type):
                found += _custom_types(part, seen)
    return found


def mentions_pydantic(annotation: Any, depth: int = 0) -> bool:
    """Whether pydantic must handle `annotation`: it is, holds or is annotated with pydantic's.

    True for a pydantic model (or a subclass of one) anywhere in the type,
    its arguments or its `Annotated` metadata (a `Field(...)`, say): such
    types are validated, and described in AsyncAPI, by pydantic.
    """
    if depth > 8:
        return False
    target = annotation if isinstance(annotation, type) else type(annotation)
    if any(_from_pydantic(cls.__module__) for cls in target.__mro__):
        return True
    if typing.get_origin(annotation) is typing.Annotated:
        parts = (annotation.__origin__, *annotation.__metadata__)
    else:
        parts = typing.get_args(annotation)
    return any(mentions_pydantic(part, depth + 1) for part in parts)


def _from_pydantic(module: str) -> bool:
    # pydantic itself and its own packages (pydantic_core, pydantic_extra_types, ...).
    package = module.partition(".")[0]
    return package == "pydantic" or package.startswith("pydantic_")


def _of_kind(kind: type) -> Callable[[Any], Any]:
    """`_checking(identity, kind)` without the call to `identity`: routed `data: dict`."""

    def check(value: Any) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"expected a JSON {_JSON_NAMES.get(kind, kind.__name__)}")
        return value

    return check


def _checking(parse: Callable[[Any], Any], kind: type) -> Callable[[Any], Any]:
    def check(raw: Any) -> Any:
        value = parse(raw)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"expected a JSON {_JSON_NAMES.get(kind, kind.__name__)}")
        return value

    return check


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}


def text_frame(message: Message) -> Any:
    """The text of a text frame; a binary frame is unsupported data (1003)."""
    text = message.get("text")
    if text is None:
        raise DecodeError(UNSUPPORTED_DATA, "expected a text frame")
    return text


def _bytes_frame(message: Message) -> Any:
    data = message.get("bytes")
    if data is None:
        raise DecodeError(UNSUPPORTED_DATA, "expected a binary frame")
    return data


def _any_frame(message: Message) -> Any:
    text = message.get("text")
    return message.get("bytes") if text is None else text


def frame_reader(encoding: str | None) -> Decoder:
    """The payload of a message, from the frames `encoding` allows (1003 otherwise)."""
    return {"text": text_frame, "bytes": _bytes_frame}.get(encoding, _any_frame)  # type: ignore[arg-type]


def _parsing(frame: Decoder, parse: Callable[[Any], Any]) -> Decoder:
    def decode(message: Message) -> Any:
        raw = frame(message)
        try:
            return parse(raw)
        except DECODE_FAILURES as exc:
            raise DecodeError(INVALID_PAYLOAD, describe(exc)) from exc

    return decode


def parse_json(raw: str | bytes) -> Any:
    """Parse a message's JSON; malformed or too deeply nested JSON is a `DecodeError` (1007)."""
    try:
        return loads(raw)
    except DECODE_FAILURES as exc:
        raise DecodeError(INVALID_PAYLOAD, describe(exc)) from exc


TOO_DEEP = "malformed JSON: nested too deeply"


def describe(exc: BaseException) -> str:
    """A one-line reason for a decode or validation failure."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic: name the first failing field
        try:
            first = errors()[0]
            if first.get("type") == "json_invalid":  # pydantic's own JSON parser failed
                detail = str(first.get("ctx", {}).get("error", ""))
                return TOO_DEEP if "recursion limit" in detail else f"malformed JSON: {detail}"
            where = ".".join(str(part) for part in first.get("loc", ())) or "message"
            return f"invalid message: {where}: {first.get('msg', exc)}"
        except Exception:
            pass
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if _is_malformed(exc):
        return f"malformed JSON: {text}"
    return f"invalid message: {text}"


def _is_malformed(exc: BaseException) -> bool:
    # By msgspec's exception classes, not its wording: ValidationError subclasses DecodeError.
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return True
    return (
        msgspec is not None
        and isinstance(exc, msgspec.DecodeError)
        and not isinstance(exc, msgspec.ValidationError)
    )
