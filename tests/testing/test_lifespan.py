"""`lifespan()`: the app's startup and shutdown around a block, and their failures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from testing_apps import make_app_with_lifespan

from tether.testing import LifespanFailed, connect, lifespan

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- lifespan


async def test_lifespan_runs_startup_and_shutdown_and_shares_its_state() -> None:
    events: list[str] = []
    app = make_app_with_lifespan(events)
    async with lifespan(app) as state:
        assert events == ["startup"]
        assert state == {"greeting": "hello from lifespan"}
        async with connect(app, "/ws", state=state) as ws:
            assert await ws.receive_text() == "hello from lifespan"
    assert events == ["startup", "shutdown"]


async def test_a_failing_startup_raises_lifespan_failed() -> None:
    app = make_app_with_lifespan([], fail=True)
    with pytest.raises(LifespanFailed, match="database unreachable") as failed:
        async with lifespan(app):
            pytest.fail("startup failed, the block must not run")
    assert failed.value.phase == "startup"
    assert isinstance(failed.value.__cause__, RuntimeError)


async def test_a_failing_shutdown_raises_lifespan_failed() -> None:
    @contextlib.asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        raise RuntimeError("could not flush")

    app = Starlette(lifespan=app_lifespan)
    with pytest.raises(LifespanFailed, match="could not flush") as failed:
        async with lifespan(app):
            pass
    assert failed.value.phase == "shutdown"


async def test_a_startup_that_never_answers_times_out() -> None:
    async def stuck(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await anyio.sleep_forever()

    with anyio.fail_after(3):
        with pytest.raises(LifespanFailed, match=r"did not answer 'lifespan.startup' within 0\.2s"):
            async with lifespan(stuck, timeout=0.2):
                pass


# What asgi-lifespan's LifespanManager does not do (docs/testing.md, "Why not asgi-lifespan")


async def test_a_failed_answer_carries_the_apps_message_even_if_the_app_does_not_raise() -> None:
    async def polite(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        await receive()  # waits for what the server does next

    with anyio.fail_after(3):
        with pytest.raises(LifespanFailed, match="startup failed: database unreachable"):
            async with lifespan(polite, timeout=0.2):
                pytest.fail("startup failed, the block must not run")


async def test_shutdown_runs_even_when_the_block_raises() -> None:
    events: list[str] = []
    app = make_app_with_lifespan(events)
    with pytest.raises(ValueError, match="the test failed"):  # as it is, not in a group
        async with lifespan(app):
            raise ValueError("the test failed")
    assert events == ["startup", "shutdown"]  # app-scoped teardown ran


async def test_an_app_that_returns_without_answering_is_seen_at_once() -> None:
    async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    # a 60 s timeout that is never waited out: the outer bound would fail first
    with anyio.fail_after(5):
        with pytest.raises(LifespanFailed, match="returned without answering"):
            async with lifespan(no_lifespan, timeout=60):
                pass
        async with lifespan(no_lifespan, mode="auto", timeout=60) as state:
            assert state == {}
