"""Every WebSocket close code tether sends or reports, in one table.

The numbers come from `starlette.status` (RFC 6455's registry); the names
and meanings here are what tether uses them for. Modules import the
constants; `CLOSE_CODES` is the table the errors page is checked against.
"""

from __future__ import annotations

from typing import NamedTuple

from starlette import status

__all__ = [
    "ABNORMAL_CLOSURE",
    "CLOSE_CODES",
    "GOING_AWAY",
    "INTERNAL_ERROR",
    "INVALID_PAYLOAD",
    "MESSAGE_TOO_BIG",
    "NORMAL_CLOSURE",
    "NO_STATUS",
    "POLICY_VIOLATION",
    "SERVICE_RESTART",
    "TRY_AGAIN_LATER",
    "UNSUPPORTED_DATA",
    "CloseCode",
]


class CloseCode(NamedTuple):
    """One row of the table: the number, its name, when tether uses it, and who sends it.

    `sent` is False for the codes tether never sends itself but passes to
    `on_disconnect` as the server reported them (1005, 1006, 1012).
    """

    code: int
    name: str
    meaning: str
    sent: bool = True


NORMAL_CLOSURE = status.WS_1000_NORMAL_CLOSURE
"""1000: a close with no code of its own (`websocket.close()`)."""
GOING_AWAY = status.WS_1001_GOING_AWAY
"""1001: `idle_timeout` passed, or the server is shutting down."""
UNSUPPORTED_DATA = status.WS_1003_UNSUPPORTED_DATA
"""1003: a frame of the wrong kind for `encoding`, or an event with no handler."""
NO_STATUS = status.WS_1005_NO_STATUS_RCVD
"""1005, reported only: the client's close frame carried no code."""
ABNORMAL_CLOSURE = status.WS_1006_ABNORMAL_CLOSURE
"""1006, reported only: the connection dropped without a close frame."""
INVALID_PAYLOAD = status.WS_1007_INVALID_FRAME_PAYLOAD_DATA
"""1007: malformed JSON, or a message that fails validation."""
POLICY_VIOLATION = status.WS_1008_POLICY_VIOLATION
"""1008: a refused handshake (HTTP 403), or `rate_limit` exceeded."""
MESSAGE_TOO_BIG = status.WS_1009_MESSAGE_TOO_BIG
"""1009: a message larger than `max_message_size`."""
INTERNAL_ERROR = status.WS_1011_INTERNAL_ERROR
"""1011: an unhandled exception in a hook or a dependency."""
SERVICE_RESTART = status.WS_1012_SERVICE_RESTART
"""1012, reported only: the server (uvicorn) closed at shutdown."""
TRY_AGAIN_LATER = status.WS_1013_TRY_AGAIN_LATER
"""1013: the outbound queue overflowed under `outbound_policy = "close"`."""

CLOSE_CODES: tuple[CloseCode, ...] = (
    CloseCode(NORMAL_CLOSURE, "Normal closure", "`websocket.close()` with no code"),
    CloseCode(GOING_AWAY, "Going away", "idle timeout, or the server is shutting down"),
    CloseCode(UNSUPPORTED_DATA, "Unsupported data", "a frame of the wrong kind, an unknown event"),
    CloseCode(NO_STATUS, "No status received", "the client's close had no code", sent=False),
    CloseCode(ABNORMAL_CLOSURE, "Abnormal closure", "the connection dropped", sent=False),
    CloseCode(INVALID_PAYLOAD, "Invalid payload", "malformed JSON, or a failed validation"),
    CloseCode(POLICY_VIOLATION, "Policy violation", "a refused handshake, or a rate limit"),
    CloseCode(MESSAGE_TOO_BIG, "Message too big", "a message over `max_message_size`"),
    CloseCode(INTERNAL_ERROR, "Internal error", "an unhandled exception in a hook"),
    CloseCode(SERVICE_RESTART, "Service restart", "the server restarts (uvicorn)", sent=False),
    CloseCode(TRY_AGAIN_LATER, "Try again later", "the outbound queue overflowed"),
)
"""Every code above, as `CloseCode` rows in numeric order."""
