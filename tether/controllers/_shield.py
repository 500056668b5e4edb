"""Shielding teardown from cancellation, paid for only where a cancellation can arrive.

`on_disconnect` and dependency teardown must run to the end even when the
connection is cancelled (Starlette's TestClient cancels the app right after the
client leaves). An anyio `CancelScope(shield=True)` does that, but entering one
costs about 10 µs on asyncio, a quarter of a connection with a dependency graph.

On asyncio such a shield only holds off anyio's own cancellation: a native
`Task.cancel()` goes through it. anyio cancels a task only while one of its
cancel scopes encloses the task, and it notes that scope in a per-task record.
A task that no anyio scope encloses (uvicorn's connection tasks, for one) has
nothing the shield could hold off, so it gets no shield. Where that record
cannot be read, with `TETHER_NO_PRIVATE=1` (see `tether.internals`), or on
another backend (trio), the shield is always entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import anyio

from tether._running_loop import running_asyncio_loop
from tether.internals import USE_PRIVATE_INTERNALS

_task_states = None  # then every teardown is shielded
if USE_PRIVATE_INTERNALS:
    with contextlib.suppress(ImportError):  # else: a future anyio
        # anyio's record of which cancel scope encloses each asyncio task
        from anyio._backends._asyncio import _task_states

_NOTHING_TO_HOLD_OFF: AbstractContextManager[Any] = nullcontext()


def teardown_shield() -> AbstractContextManager[Any]:
    """A context manager under which teardown runs to the end, whatever is cancelled."""
    # Asked only where trio is loaded: asking asyncio costs a system call (getpid).
    if _task_states is None or ("trio" in sys.modules and running_asyncio_loop() is None):
        return anyio.CancelScope(shield=True)  # trio's shields are its own
    if _task_states.data:  # some task has a record (its dict, not the slower mapping): this one?
        state = _task_states.get(asyncio.current_task())
        if state is not None and getattr(state, "cancel_scope", True) is not None:
            return anyio.CancelScope(shield=True)
    return _NOTHING_TO_HOLD_OFF


def close_frame_shield(seconds: float) -> AbstractContextManager[Any]:
    """`teardown_shield` for sending a close frame: held for at most `seconds`.

    The bound keeps a server whose send of the close never returns from making
    the connection impossible to cancel.
    """
    shield = teardown_shield()
    if shield is _NOTHING_TO_HOLD_OFF:
        return shield
    return anyio.CancelScope(shield=True, deadline=anyio.current_time() + seconds)
