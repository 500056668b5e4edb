"""Frames: values to ASGI send messages, and JSON both ways, done one way everywhere.

Replies from hooks and messages published to groups are encoded here, so a
client sees the same JSON whichever way a value reached it. msgspec does the
JSON work when it is installed (the `msgspec` extra); the standard library
otherwise, with one encoder built once.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import uuid
from typing import Any

try:
    import msgspec
except ImportError:  # pragma: no cover - the msgspec extra is optional
    msgspec = None  # type: ignore[assignment]

__all__ = ["dumps", "encode_frame", "loads"]


def _unsupported(value: Any) -> TypeError:
    # Only the failing path pays for the hint: the encoder calls here for what it cannot encode.
    if inspect.isawaitable(value):
        name = getattr(value, "__qualname__", type(value).__name__)
        if inspect.iscoroutine(value):
            value.close()  # it can never run now; the error says why, Python need not warn later
        return TypeError(
            f"cannot send {type(value).__name__} {name!r} as JSON: did you forget await? "
            "A hook returned (or published) an awaitable instead of its result."
        )
    return TypeError(
        f"cannot send {type(value).__name__!r} as JSON: send a str, bytes, dict, list, "
        "dataclass, pydantic model or msgspec Struct, or convert it first"
    )


def _enc_hook(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # pydantic
        return value.model_dump(mode="json")
    raise _unsupported(value)


def _default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Shallow: the encoder calls back for nested values.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise _unsupported(value)


if msgspec is not None:
    _loads = msgspec.json.decode
    _encoder = msgspec.json.Encoder(enc_hook=_enc_hook)

    def dumps(value: Any) -> str:
        """Encode a value as compact JSON text with unescaped UTF-8."""
        return _encoder.encode(value).decode()

else:  # pragma: no cover
    _loads = json.loads
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode


# Parse JSON text or UTF-8 bytes; raises `ValueError` when malformed (msgspec's
# DecodeError and json's JSONDecodeError both are). The parser itself, not a
# function around it: routed messages are parsed here, one Python call less each.
loads = _loads


def encode_frame(value: Any) -> dict[str, Any]:
    """The ASGI `websocket.send` message for a value.

    `str` goes out as a text frame, `bytes` (and `bytearray`, `memoryview`) as
    a binary frame, anything else (dicts, lists, dataclasses, pydantic models,
    msgspec Structs) as JSON text. Raises `TypeError` for what JSON cannot hold.
    """
    if type(value) is str:
        return {"type": "websocket.send", "text": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "websocket.send", "bytes": bytes(value)}
    if isinstance(value, str):  # a str subclass
        return {"type": "websocket.send", "text": str(value)}
    return {"type": "websocket.send", "text": dumps(value)}
