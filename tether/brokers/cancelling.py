"""Cancelling a broker's own tasks and waiting until they have ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

# How long one cancel is given before it is sent again.
_RECANCEL_SECONDS = 1.0


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel `tasks` and wait until every one has ended.

    A task still running after a second is cancelled again: on Python 3.10
    anyio cannot tell a cancel from outside from its own `fail_after`
    deadline, so a cancel that arrives as that deadline expires becomes the
    scope's `TimeoutError`, which a loop that retries on timeouts carries on
    from. Each cancel that lands elsewhere ends the task.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_SECONDS)
