"""Application lifespan: what starts with the app and what is torn down with it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from tether.controllers.shutdown import close_sessions_on_signal, sessions
from tether.di.resolver import app_scope

logger = logging.getLogger("tether")


@asynccontextmanager
async def lifespan(app: Any = None) -> AsyncIterator[None]:
    """Tear down app-scoped dependencies when the application shuts down.

    Pass it to your framework (`Starlette(routes=..., lifespan=tether.lifespan)`)
    or enter it from your own lifespan (`async with tether.lifespan(app): ...`).
    A bare controller served directly by an ASGI server runs it by itself.
    While it runs, a SIGTERM or SIGINT first closes open connections with
    1001 (see `tether.controllers.shutdown`), then reaches the server. When
    it ends, connections still open are closed with 1001 and awaited (at most
    `GRACE_SECONDS`) before app-scoped dependencies are torn down.
    """
    try:
        async with anyio.create_task_group() as tasks:
            await tasks.start(close_sessions_on_signal)
            yield
            # Some servers (granian) end the lifespan before their connections:
            # those still use what app scope holds, so they end first.
            await sessions.close_all()
            tasks.cancel_scope.cancel()
    finally:
        await app_scope.aclose()


async def serve_lifespan(receive: Any, send: Any, broker: Any = None) -> None:
    """Answer an ASGI `lifespan` scope for a bare controller.

    Startup starts the controller's broker; shutdown stops it and tears down
    app-scoped dependencies.
    """
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    try:
        if broker is not None:
            await broker.start()
    except Exception as exc:
        logger.exception("lifespan startup failed")
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
        return
    async with lifespan():
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        if broker is not None:
            await broker.stop()
    await send({"type": "lifespan.shutdown.complete"})
