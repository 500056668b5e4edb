"""An app under test, its lifespan running, opening connections to it: `AppClient`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, Literal

from starlette.types import ASGIApp

from tether.testing.lifespan import lifespan as _run_lifespan
from tether.testing.session import WebSocketSession, connect

__all__ = ["AppClient"]


class AppClient:
    """An app under test: runs its lifespan and opens WebSocket connections to it.

    ```python
    async with AppClient(app) as client:          # lifespan startup
        async with client.connect("/ws") as ws:    # scope["state"] = lifespan state
            ...
    ```

    - `lifespan`: `"auto"` (default) runs it if the app supports it, `"on"`
      requires it, `"off"` skips it. `client.state` is the lifespan state.
    - `timeout`, `base_url` and `raise_app_exceptions` are the defaults for
      `connect()`; each call may override them.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        timeout: float = 5.0,
        base_url: str = "ws://testserver",
        raise_app_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.timeout = timeout
        self._lifespan_mode = lifespan
        self._base_url = base_url
        self._raise_app_exceptions = raise_app_exceptions
        self._stack = AsyncExitStack()
        self._started = False

    async def __aenter__(self) -> AppClient:
        if self._lifespan_mode != "off":
            self.state = await self._stack.enter_async_context(
                _run_lifespan(self.app, mode=self._lifespan_mode, timeout=self.timeout)
            )
        self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._started = False
        return await self._stack.__aexit__(exc_type, exc, traceback)

    def connect(
        self, path: str = "/", **options: Any
    ) -> AbstractAsyncContextManager[WebSocketSession]:
        """Open a connection, like `tether.testing.connect(app, path, **options)`."""
        if not self._started and self._lifespan_mode != "off":
            raise RuntimeError(
                "enter the client first (`async with AppClient(app) as client:`) so the app's "
                "lifespan runs, or pass lifespan='off'"
            )
        options.setdefault("state", self.state)
        options.setdefault("timeout", self.timeout)
        options.setdefault("base_url", self._base_url)
        options.setdefault("raise_app_exceptions", self._raise_app_exceptions)
        return connect(self.app, path, **options)
