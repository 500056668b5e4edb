"""The running asyncio event loop, for the code that works differently under asyncio.

Several parts take a faster path on asyncio (bare futures, eager sends) or
need it outright (redis.asyncio), and run under trio otherwise. They ask here.
"""

from __future__ import annotations

import asyncio


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running in this thread, or None (under trio, or outside any loop)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
