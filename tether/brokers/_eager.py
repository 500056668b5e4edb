"""Starting a member's `send` in the publisher's call, as a step of the member's own task.

On asyncio most of the price of delivering to an idle member is waking its
task: the publish resolves the future the member's `run()` waits on, the event
loop schedules the task, and only then does the task call `send` (1,000
members: about 1.7 ms of wake-ups alone, on the benchmark machine). Yet an ASGI
server's `send` for a data frame usually finishes without suspending: it
writes to the transport and returns.

So `OutboundQueue.deliver` starts `send(message)` right away, the way CPython
3.12's eager tasks run a new task's first step inside `create_task`: the step
runs with the member's task swapped in as the current task, and in a copy of
the member's context taken when its `run()` started (every step of that send
runs in the same copy). So `asyncio.current_task()`, `asyncio.timeout`, anyio
cancel scopes and context variables inside `send` see the member, not the
publisher. If `send` completes in that step, the member's task never wakes. If
it suspends (the transport is applying back-pressure), the suspended coroutine
is handed to the member's task, which resumes it exactly where it stopped
(`Resume`), so the publisher still never waits for a slow client.

asyncio only: under trio a suspended step is tied to the task that ran it.
Off (`EAGER_SENDS` False) with `TETHER_NO_PRIVATE=1` (see `tether.internals`),
or where asyncio has neither private name: then the member's task sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from tether.internals import USE_PRIVATE_INTERNALS

__all__ = ["EAGER_SENDS", "Resume", "start_send"]

Step = Any  # a coroutine, or the iterator an awaitable's __await__ returns


_swap_current_task = _current_tasks = None
if USE_PRIVATE_INTERNALS:
    try:  # 3.12+: one call swaps the running task, as eager tasks do
        from asyncio.tasks import _swap_current_task
    except ImportError:  # 3.10, 3.11: swapped in the table that _enter_task and _leave_task keep
        with contextlib.suppress(ImportError):  # else: an asyncio with neither
            from asyncio.tasks import _current_tasks

EAGER_SENDS = _swap_current_task is not None or _current_tasks is not None
"""Whether `start_send` may be used; when False, the member's own task sends."""


def start_send(
    send: Callable[[Any], Awaitable[None]],
    message: Any,
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
    context: contextvars.Context,
) -> tuple[Step, Any] | None:
    """Run `send(message)` up to its first suspension, as a step of `task`.

    Returns None when the send finished, else `(step, yielded)`: the suspended
    coroutine and what it yielded to the event loop, for `Resume` in `task`.
    An exception the send raised in that step propagates.
    """
    awaitable = send(message)
    step = awaitable if hasattr(awaitable, "send") else awaitable.__await__()
    if _swap_current_task is not None:
        previous = _swap_current_task(loop, task)
    else:
        previous = _current_tasks.get(loop)
        _current_tasks[loop] = task
    try:
        yielded = context.run(step.send, None)
    except StopIteration:
        return None
    finally:
        if _swap_current_task is not None:
            _swap_current_task(loop, previous)
        elif previous is None:
            del _current_tasks[loop]
        else:
            _current_tasks[loop] = previous
    return step, yielded


class Resume:
    """Awaited in the member's task: finishes a send that `start_send` left suspended.

    Each step runs in the same `context` as the first, so a context variable
    the send set before suspending is still its own when it resumes.
    Cancellation of the task is thrown into the send, as `await` would.
    """

    __slots__ = ("_context", "_step", "_yielded")

    def __init__(self, started: tuple[Step, Any], context: contextvars.Context) -> None:
        self._step, self._yielded = started
        self._context = context

    def close(self) -> None:
        """Abandon the send (its `finally` blocks run): for an owner that stops before resuming."""
        self._step.close()

    def __await__(self) -> Generator[Any, Any, None]:
        step, run, value = self._step, self._context.run, self._yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:  # every exception goes to the send, as `await` would
                try:
                    value = run(step.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    value = run(step.send, sent)
                except StopIteration:
                    return
