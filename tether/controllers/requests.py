"""Request/response over one connection, both ways: envelopes, error codes, waiters.

A routed client message with a `"ref"` (the controller's `request_key`) is
a request: tether answers it with `{"ref": ..., "ok": true, "data": ...}`
(the handler's return value) or `{"ref": ..., "ok": false, "error":
{"code": ..., "message": ...}}`.
`WebSocketController.call` sends the client a request of its own,
`{"type": ..., "call": n, "data": ...}`, and awaits the client's reply,
`{"call": n, "ok": ..., ...}`; `PendingCalls` holds what it waits for. The wire format
is written down in docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

import anyio

__all__ = [
    "BAD_REQUEST",
    "DUPLICATE_ID",
    "HANDLER_RAISED",
    "INVALID_DATA",
    "UNKNOWN_EVENT",
    "CallClosed",
    "CallError",
    "CallTimeout",
    "PendingCalls",
    "RequestError",
    "error_reply",
    "ok_reply",
    "valid_id",
]

# The error codes tether itself answers with; an application adds its own with RequestError.
BAD_REQUEST = "bad_request"  # the envelope is malformed: an id that is not an integer or string
UNKNOWN_EVENT = "unknown_event"  # no handler for the request's event (with reply_errors)
INVALID_DATA = "invalid_data"  # the request's data failed validation (with reply_errors)
DUPLICATE_ID = "duplicate_id"  # a request with this id is still in flight
HANDLER_RAISED = "internal_error"  # the handler raised (with reply_errors)


class RequestError(Exception):
    """Raise in a request handler to answer the request with an error and stay connected.

    `code` is a short machine-readable string (`"not_found"`), `message` a
    sentence for people; `data`, when given, travels with them. Raised by a
    handler of a message that is not a request (no request id), it is an ordinary
    exception (`on_error`, 1011).
    """

    def __init__(self, code: str, message: str = "", data: Any = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message
        self.data = data

    def as_error(self) -> dict[str, Any]:
        """The reply's `"error"` object."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class CallError(Exception):
    """The other side answered a call with an error: its `code`, `message` and `data`."""

    def __init__(self, event: str, code: str, message: str = "", data: Any = None) -> None:
        super().__init__(f"call {event!r} failed: {code}" + (f": {message}" if message else ""))
        self.event = event
        self.code = code
        self.message = message
        self.data = data


class CallClosed(ConnectionError):
    """A call got no reply because its connection closed (or the client had gone) first.

    A `ConnectionError`, so `except ConnectionError` catches it. Left to
    propagate out of a handler, it ends the handler like a client
    disconnect does: no `on_error`, no ERROR log, and `on_disconnect` gets
    the connection's real close code.
    """

    def __init__(self, event: str, why: str = "the connection closed") -> None:
        super().__init__(f"call {event!r}: {why}")
        self.event = event


class CallTimeout(TimeoutError):
    """No reply to a call within its timeout; `event` names the call."""

    def __init__(self, event: str, timeout: float) -> None:
        super().__init__(f"call {event!r} got no reply within {timeout:g}s")
        self.event = event
        self.timeout = timeout


def valid_id(value: Any) -> bool:
    """Whether `value` can be a request id: an integer (not a bool) or a string."""
    kind = type(value)
    return kind is int or kind is str


def ok_reply(request_id: Any, data: Any, key: str) -> dict[str, Any]:
    """The reply that carries a handler's return value (`key="call"` answers a call)."""
    return {key: request_id, "ok": True, "data": data}


def error_reply(request_id: Any, code: str, message: str, key: str) -> dict[str, Any]:
    """A reply that carries an error (`request_id` None when the id itself was bad)."""
    return {key: request_id, "ok": False, "error": {"code": code, "message": message}}


class _Waiter:
    __slots__ = ("done", "error", "event", "value")

    def __init__(self, event: str) -> None:
        self.event = event
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class PendingCalls:
    """One connection's calls to its client that await a reply, by id.

    Ids count up from 1 per connection under the key `"call"`, apart from the
    client's own request ids (`"ref"`), so the two directions never clash.
    When the connection ends, `close` fails every waiter with `CallClosed`.
    """

    __slots__ = ("_next", "closed", "waiting")

    def __init__(self) -> None:
        self._next = 0
        self.waiting: dict[int, _Waiter] = {}
        self.closed = False

    def open(self, event: str) -> tuple[int, _Waiter]:
        """A fresh id and the waiter its reply resolves."""
        if self.closed:
            raise CallClosed(event, "the connection is closed")
        self._next += 1
        waiter = self.waiting[self._next] = _Waiter(event)
        return self._next, waiter

    async def wait(self, call_id: int, waiter: _Waiter, timeout: float) -> Any:
        """The reply's data; raises `CallTimeout`, `CallError` or `CallClosed`."""
        try:
            with anyio.move_on_after(timeout):
                await waiter.done.wait()
        finally:
            self.waiting.pop(call_id, None)
        if not waiter.done.is_set():
            raise CallTimeout(waiter.event, timeout)
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def resolve(self, call_id: Any, reply: dict[str, Any]) -> bool:
        """Hand a reply to its waiter; False when no call awaits that id (late or unknown)."""
        waiter = self.waiting.pop(call_id, None) if type(call_id) is int else None
        if waiter is None:
            return False
        if reply.get("ok") is True:
            waiter.value = reply.get("data")
        else:
            error = reply.get("error")
            error = error if type(error) is dict else {}
            code, message = error.get("code"), error.get("message")
            waiter.error = CallError(
                waiter.event,
                code if type(code) is str else BAD_REQUEST,
                message if type(message) is str else "",
                error.get("data"),
            )
        waiter.done.set()
        return True

    def close(self) -> None:
        """The connection ended: every call still waiting fails now."""
        self.closed = True
        for waiter in self.waiting.values():
            waiter.error = CallClosed(waiter.event)
            waiter.done.set()
        self.waiting.clear()
