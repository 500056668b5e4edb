"""An unrolled resolver gives what `solve` gives: values, calls, caches and teardowns, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tether import Provide, Query, override
from tether.di import CallPlan, ConfigurationError, Context, ScopeState, solve
from tether.di._unrolled import unroll
from tether.di.compiler import CONNECTION_NAMES, compile_hook
from tether.di.resolver import app_scope

pytestmark = pytest.mark.anyio

events: list[str] = []


class FakeWebSocket:
    """Just what the request getters read: the scope."""

    def __init__(self, query: bytes = b"", path_params: dict[str, str] | None = None) -> None:
        self.scope = {"query_string": query, "headers": [], "path_params": path_params or {}}


def settings() -> dict[str, str]:
    events.append("settings")
    return {"dsn": "memory"}


async def account(settings: dict = Provide(settings), name: str = Query("anon")) -> str:
    events.append("account")
    return f"{name}@{settings['dsn']}"


async def login(account: str = Provide(account)) -> AsyncIterator[str]:
    events.append("session opened")
    yield f"session of {account}"
    events.append("session closed")


def cursor(login: str = Provide(login)) -> Iterator[str]:
    events.append("cursor opened")
    yield f"cursor in {login}"
    events.append("cursor closed")


def counter() -> list[int]:
    events.append("counter")
    return [0]


def version() -> str:
    events.append("version")
    return "1.0"


def hook(
    room: str,
    cur: str = Provide(cursor),
    acc: str = Provide(account),
    fresh: list = Provide(counter, use_cache=False),
    again: list = Provide(counter, use_cache=False),
    per_message: list = Provide(counter, scope="message"),
    ver: str = Provide(version, scope="app"),
    limit: int = Query(10),
) -> None: ...


def compiled(func: Callable[..., Any]) -> CallPlan:
    return compile_hook(func, func.__name__, allowed=CONNECTION_NAMES, method=False)


def context() -> Context:
    ctx = Context(FakeWebSocket(b"name=ada&limit=3", {"room": "lobby"}), ScopeState())
    ctx.message = ScopeState()
    return ctx


async def run(resolve: Callable[[Context], Any]) -> tuple[dict[str, Any], list[str]]:
    """Resolve on a fresh context, tear down; return the values and every event, in order."""
    events.clear()
    app_scope.cache.pop(version, None)
    ctx = context()
    values = await resolve(ctx)
    for scope in (ctx.message, ctx.connection):
        await scope.aclose()
    return values, list(events)


async def test_values_calls_and_teardowns_match_solve() -> None:
    params = compiled(hook).params
    expected = await run(lambda ctx: solve(params, ctx))
    assert await run(unroll(params, "hook")) == expected
    values, order = expected
    assert values["cur"] == "cursor in session of ada@memory"
    assert values["fresh"] is not values["again"]
    assert values["limit"] == 3
    assert order == [
        "settings",
        "account",
        "session opened",
        "cursor opened",
        "counter",
        "counter",
        "counter",
        "version",
        "cursor closed",
        "session closed",
    ]


async def test_an_override_is_honoured() -> None:
    params = compiled(hook).params
    resolve = unroll(params, "hook")

    def fake_settings() -> dict[str, str]:
        return {"dsn": "fake"}

    with override(settings, fake_settings):
        values, _ = await run(resolve)
    assert values["acc"] == "ada@fake"
    values, _ = await run(resolve)
    assert values["acc"] == "ada@memory"


async def test_a_cached_value_is_reused_not_recomputed() -> None:
    params = compiled(hook).params
    resolve = unroll(params, "hook")
    ctx = context()
    first = await resolve(ctx)
    events.clear()
    second = await resolve(ctx)
    assert second["cur"] is first["cur"]
    assert events == ["counter", "counter"]  # only the use_cache=False ones
    await ctx.connection.aclose()


async def test_errors_match_solve() -> None:
    async def empty() -> AsyncIterator[str]:
        return
        yield  # an async generator that never yields

    def uses_empty(value: str = Provide(empty)) -> None: ...

    def needs_a_connection(acc: str = Provide(account)) -> None: ...

    empty_params = compiled(uses_empty).params
    with pytest.raises(RuntimeError, match="did not yield a value"):
        await unroll(empty_params, "uses_empty")(context())

    unscoped = Context(FakeWebSocket(), None)
    params = compiled(needs_a_connection).params
    with pytest.raises(ConfigurationError, match="no open scope"):
        await solve(params, unscoped)
    with pytest.raises(ConfigurationError, match="no open scope"):
        await unroll(params, "needs_a_connection")(unscoped)


async def test_tracebacks_show_the_resolver_source() -> None:
    async def broken() -> str:
        raise ValueError("down")

    def uses_broken(value: str = Provide(broken)) -> None: ...

    resolve = unroll(compiled(uses_broken).params, "Chat.on_connect")
    with pytest.raises(ValueError, match="down") as caught:
        await resolve(context())
    frames = [entry for entry in caught.traceback if "the resolver of" in str(entry.path)]
    assert frames and "await call" in str(frames[0].statement)
