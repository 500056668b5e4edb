"""Run an app's ASGI lifespan around a block: `lifespan()`.

Ours rather than `asgi-lifespan`'s `LifespanManager`: see docs/testing.md
("Why not asgi-lifespan") for what this one does that it does not.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from starlette.types import ASGIApp, Message, Scope

from tether.testing.errors import LifespanFailed

__all__ = ["lifespan"]


class _LifespanRun:
    """One run of an app's lifespan protocol; `lifespan()` drives it."""

    def __init__(self, app: ASGIApp, *, mode: Literal["on", "auto"], timeout: float) -> None:
        self.state: dict[str, Any] = {}
        self.timeout = timeout
        self.mode = mode
        self.started = False
        self.error: Exception | None = None  # raised when leaving lifespan()
        self.app_exception: Exception | None = None
        self._app = app
        self._scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._to_client, self._inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._app_scope = anyio.CancelScope(shield=True)  # cancelled by shutdown(), bounded
        self._app_done = anyio.Event()

    async def serve(self) -> None:
        try:
            with self._app_scope:
                await self._app(self._scope, self._app_inbox.receive, self._to_client.send)
        except Exception as exc:
            self.app_exception = exc
        finally:
            self._app_done.set()
            self._to_client.close()  # a waiting _exchange() sees EndOfStream

    async def startup(self) -> None:
        """Send `lifespan.startup`; afterwards `started` or `error` tells how it went."""
        answer = await self._exchange("startup")
        if answer == "lifespan.startup.complete":
            self.started = True
        elif self.error is None and self.mode == "auto":
            self.app_exception = None  # no lifespan support: go on without it, as uvicorn does
        elif self.error is None:
            self.error = self.app_exception or LifespanFailed(
                "startup", "the app returned without answering 'lifespan.startup'"
            )

    async def shutdown(self) -> None:
        """Send `lifespan.shutdown`, then wait for the app to return (shielded, bounded)."""
        if not self.started:  # the app is done, or stuck in a startup that timed out
            self._app_scope.cancel()
            return
        with anyio.CancelScope(shield=True):
            if not self._app_done.is_set():
                answer = await self._exchange("shutdown")
                if answer != "lifespan.shutdown.complete" and self.error is None:
                    self.error = self.app_exception or LifespanFailed(
                        "shutdown", "the app returned without answering 'lifespan.shutdown'"
                    )
            with anyio.move_on_after(self.timeout):
                await self._app_done.wait()
            self._app_scope.cancel()

    def close_streams(self) -> None:
        for stream in (self._to_app, self._app_inbox, self._to_client, self._inbox):
            stream.close()

    async def _exchange(self, phase: str) -> str | None:
        """Send `lifespan.<phase>` and return the type of the app's answer (None: no answer)."""
        self._to_app.send_nowait({"type": f"lifespan.{phase}"})
        try:
            with anyio.fail_after(self.timeout):
                answer = await self._inbox.receive()
        except TimeoutError:
            self.error = LifespanFailed(
                phase, f"the app did not answer 'lifespan.{phase}' within {self.timeout}s"
            )
            return None
        except anyio.EndOfStream:
            return None
        if answer["type"] == f"lifespan.{phase}.failed":
            self.error = LifespanFailed(phase, answer.get("message") or "(no message)")
            with anyio.move_on_after(self.timeout):  # the app usually raises right after
                await self._app_done.wait()
            if self.app_exception is not None:
                self.error.__cause__ = self.app_exception
        return str(answer["type"])


@asynccontextmanager
async def lifespan(
    app: ASGIApp, *, mode: Literal["on", "auto"] = "on", timeout: float = 5.0
) -> AsyncIterator[dict[str, Any]]:
    """Run the app's ASGI lifespan around the block; yield the lifespan `state` dict.

    ```python
    async with lifespan(app) as state:
        async with connect(app, "/ws", state=state) as ws:
            ...
    ```

    Startup and shutdown each wait at most `timeout` seconds. A
    `lifespan.startup.failed` or `lifespan.shutdown.failed` answer raises
    `LifespanFailed` (with the app's exception as its cause). With `mode="on"`
    an app that raises or returns before answering startup has its error
    raised; with `mode="auto"` it is taken as not supporting lifespan (as
    uvicorn does) and the block runs with an empty state.
    """
    run = _LifespanRun(app, mode=mode, timeout=timeout)
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.serve)
        await run.startup()
        try:
            if run.error is None:
                yield run.state
        except Exception as exc:
            failure = exc
        finally:
            await run.shutdown()
    run.close_streams()
    if failure is not None:
        raise failure
    if run.error is not None:
        raise run.error
