"""Application lifespan: what starts with the app and what is torn down with it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tether.controllers.shutdown import install_signal_handlers, restore_signal_handlers
from tether.di.resolver import app_scope

logger = logging.getLogger("tether")


@asynccontextmanager
async def lifespan(app: Any = None) -> AsyncIterator[None]:
    """Tear down app-scoped dependencies when the application shuts down.

    Pass it to your framework (`Starlette(routes=..., lifespan=tether.lifespan)`)
    or enter it from your own lifespan (`async with tether.lifespan(app): ...`).
    A bare controller served directly by an ASGI server runs it by itself.
    While it runs, a SIGTERM or SIGINT first closes open connections with
    1001 (see `tether.controllers.shutdown`), then reaches the server.
    """
    previous = install_signal_handlers()
    try:
        yield
    finally:
        restore_signal_handlers(previous)
        await app_scope.aclose()


async def serve_lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI `lifespan` scope: startup, then shutdown with teardown."""
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    async with lifespan():
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
    await send({"type": "lifespan.shutdown.complete"})
