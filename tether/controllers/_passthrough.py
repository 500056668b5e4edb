"""Skipping the `send` wrapper of Starlette's exception middleware, for websockets.

Every Starlette and FastAPI app runs its routes inside Starlette's exception
middleware, which hands the app a `send` wrapped in a closure. The closure
only watches for `http.response.start`, so that a handled HTTP exception can
tell whether a response has begun; every message then goes on unchanged. A
websocket never sends that message, so for a websocket connection the
wrapper does nothing but add a coroutine call to every frame sent: about a
sixth of what tether spends on an echoed text message.

The wrapper is recognised by its code object, taken from the installed
Starlette, and only that exact closure is skipped. Anything else (another
version's wrapper, a user's middleware wrapping `send`) is called as given.
With `TETHER_NO_PRIVATE=1` (see `tether.internals`) nothing is skipped.
"""

from __future__ import annotations

from types import CodeType, FunctionType
from typing import Any

from starlette.types import Send

from tether.internals import USE_PRIVATE_INTERNALS


def _find_sender() -> tuple[CodeType, int] | None:
    """The code of Starlette's `sender` closure and the cell holding the `send` it wraps."""
    try:
        from starlette._exception_handler import wrap_app_handling_exceptions
    except ImportError:  # pragma: no cover - a Starlette without the module
        return None
    for outer in wrap_app_handling_exceptions.__code__.co_consts:
        if not isinstance(outer, CodeType) or outer.co_name != "wrapped_app":
            continue
        for inner in outer.co_consts:
            if (
                isinstance(inner, CodeType)
                and inner.co_name == "sender"
                and set(inner.co_freevars) == {"response_started", "send"}
                and "http.response.start" in inner.co_consts
            ):
                return inner, inner.co_freevars.index("send")
    return None  # pragma: no cover - a Starlette whose wrapper looks otherwise


_SENDER = _find_sender() if USE_PRIVATE_INTERNALS else None


def skip_passthrough(send: Send) -> Send:
    """The `send` that Starlette's websocket pass-through wrappers (if any) end in."""
    if _SENDER is None:
        return send
    code, cell = _SENDER
    wrapped: Any = send
    # A Mount or a nested app can stack several; none of them acts on websocket frames.
    while type(wrapped) is FunctionType and wrapped.__code__ is code:
        wrapped = wrapped.__closure__[cell].cell_contents
    return wrapped
