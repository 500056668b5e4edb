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

from tether.di.conversion import unwrap_annotated
from tether.frames import encode_frame, loads

try:
    import msgspec
except ImportError:  # pragma: no cover - the msgspec extra is optional
    msgspec = None  # type: ignore[assignment]

Message = dict[str, Any]
Decoder = Callable[[Message], Any]

ENCODINGS = ("text", "bytes", "json", None)

# Close codes a decoder reports.
UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007


class DecodeError(Exception):
    """A received message that cannot become `data`.

    `code` is the close code the default `on_decode_error` closes with:
    1003 for a frame of the wrong kind (or an event with no handler), 1007
    for malformed JSON or data that fails validation. The underlying error,
    if any, is the exception's `__cause__`.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode_reply(value: Any) -> Message:
    """The ASGI message for a hook's return value (see `tether.frames.encode_frame`)."""
    return encode_frame(value)


# -- decoding ---------------------------------------------------------------------

_RAW = (inspect.Parameter.empty, Any, object)


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
    if base in _RAW or base is str or base is bytes or _is_str_or_bytes(base):
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
        return msgspec.json.Decoder(annotation).decode
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).validate_json


def compile_converter(annotation: Any) -> Callable[[Any], Any]:
    """Validate an already-parsed JSON value into `annotation` (for `@on` handlers)."""
    if annotation is inspect.Parameter.empty:
        return _identity
    base = unwrap_annotated(annotation)[0]
    if base in _RAW:
        return _identity
    if base in (dict, list, str, int, float, bool):
        return _checking(_identity, base)
    if _backend_for(annotation) == "msgspec":
        return lambda value: msgspec.convert(value, annotation)
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).validate_python


def _backend_for(annotation: Any) -> str:
    if _mentions(annotation, _is_pydantic):
        return "pydantic"
    if msgspec is not None:
        try:
            msgspec.json.Decoder(annotation)
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
        raise TypeError(f"cannot validate messages into {annotation!r}: {exc}") from exc
    return "pydantic"


def _is_pydantic(tp: Any) -> bool:
    module = type(tp).__module__ if not isinstance(tp, type) else tp.__module__
    if module.startswith("pydantic"):
        return True
    return isinstance(tp, type) and any(c.__module__.startswith("pydantic") for c in tp.__mro__[1:])


def _mentions(annotation: Any, predicate: Callable[[Any], bool], depth: int = 0) -> bool:
    if depth > 8:
        return False
    if predicate(annotation):
        return True
    return any(_mentions(arg, predicate, depth + 1) for arg in _parts(annotation))


def _parts(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is typing.Annotated:
        return (*getattr(annotation, "__metadata__", ()), annotation.__origin__)
    return typing.get_args(annotation)


def _identity(value: Any) -> Any:
    return value


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
        except ValueError as exc:
            raise DecodeError(INVALID_PAYLOAD, describe(exc)) from exc

    return decode


def describe(exc: BaseException) -> str:
    """A one-line reason for a decode or validation failure."""
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic: name the first failing field
        try:
            first = errors()[0]
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
