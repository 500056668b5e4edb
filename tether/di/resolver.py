"""The scoped resolver: turns compiled plans into values, and tears them down.

One `ScopeState` exists per scope instance (the process, a connection, a
hook call). It caches resolved dependencies and remembers the generators to
step once more at teardown, in reverse order of setup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from types import AsyncGeneratorType
from typing import Any

from tether.di.compiler import (
    APP,
    ASYNC_GENERATOR,
    COROUTINE,
    FUNCTION,
    MESSAGE,
    CallPlan,
    ConfigurationError,
    Dependency,
    Param,
    compile_dependency,
    name_of,
)

logger = logging.getLogger("tether")

_MISS = object()


class ScopeState:
    """The values resolved in one scope instance, and their teardowns.

    Make one per connection (and one per hook call for message-scoped
    dependencies), pass it in a `Context`, and `await state.aclose()` when
    the scope ends. App-scoped values live in one process-wide state that
    `tether.lifespan` tears down.
    """

    __slots__ = ("cache", "exits")

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}
        self.exits: list[Any] = []

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Run every teardown, newest first.

        When the scope ended with an exception it is thrown into generator
        dependencies at their `yield`, so their `except` blocks run. A
        teardown that fails is logged and the others still run.
        """
        exits, self.exits = self.exits, []
        self.cache.clear()
        while exits:
            # Stepped here rather than in a helper coroutine: one frame less per dependency.
            gen = exits.pop()
            is_async = type(gen) is AsyncGeneratorType or isinstance(gen, AsyncGenerator)
            try:
                if exc is not None:
                    await gen.athrow(exc) if is_async else gen.throw(exc)
                # With a default, the end of the generator is a value, not an exception to catch.
                elif (await anext(gen, _MISS) if is_async else next(gen, _MISS)) is _MISS:
                    continue
            except (StopIteration, StopAsyncIteration):
                continue
            except BaseException as raised:
                # The exception thrown in coming back out (cancellation included) is
                # expected; the remaining teardowns must still run.
                if raised is exc:
                    continue
                if not isinstance(raised, Exception):
                    raise
                logger.exception("teardown of dependency %s raised", name_of(gen))
                continue
            logger.error("dependency %s yielded more than once; closing it", name_of(gen))
            await gen.aclose() if is_async else gen.close()


# The process-wide scope of `scope="app"` dependencies.
app_scope = ScopeState()


class Context:
    """What a resolution can draw on: the connection and the open scopes.

    `Context(websocket, connection)` gives `solve` the websocket whose scope
    the query, header, cookie and path values are read from, and the
    `ScopeState` of connection-scoped dependencies. Set `message` to a
    `ScopeState` to resolve message-scoped ones, and `data`, `close_code`
    and `close_reason` for the parameters of those names.
    """

    __slots__ = (
        "close_code",
        "close_reason",
        "connection",
        "data",
        "message",
        "query",
        "websocket",
    )

    def __init__(self, websocket: Any, connection: ScopeState | None) -> None:
        self.websocket = websocket
        self.connection = connection
        self.query: dict[str, list[str]] | None = None
        self.message: ScopeState | None = None
        self.data: Any = None
        self.close_code: int | None = None
        self.close_reason: str | None = None


_APP_CONTEXT = Context(None, None)

# Active `override`s: the original callable -> the replacement's plan.
overrides: dict[Any, CallPlan] = {}


@contextmanager
def override(dependency: Callable[..., Any], replacement: Callable[..., Any]) -> Iterator[None]:
    """Swap `dependency` for `replacement` inside a `with` block (for tests).

    The replacement's signature is compiled on entry, so its mistakes raise
    here. Cached values of the original are not reused while it is active.
    """
    plan = compile_dependency(replacement)
    previous = overrides.get(dependency, _MISS)
    overrides[dependency] = plan
    try:
        yield
    finally:
        if previous is _MISS:
            del overrides[dependency]
        else:
            overrides[dependency] = previous


async def solve(params: tuple[Param, ...], ctx: Context) -> dict[str, Any]:
    """Resolve every parameter of a plan into keyword arguments."""
    values = {}
    for param in params:
        dep = param.dependency
        values[param.name] = param.get(ctx) if dep is None else await solve_dependency(dep, ctx)
    return values


async def solve_dependency(dep: Dependency, ctx: Context) -> Any:
    """Resolve one `Provide`, from its scope's cache when it may."""
    plan = dep.plan
    if overrides:
        plan = overrides.get(plan.call, plan)
    if dep.level == APP:
        state, ctx = app_scope, _APP_CONTEXT
    elif dep.level == MESSAGE:
        state = ctx.message
    else:
        state = ctx.connection
    if state is None:
        raise ConfigurationError(f"{plan.name}: no open scope to resolve it in")
    key = plan.call
    if dep.use_cache:
        value = state.cache.get(key, _MISS)
        if value is not _MISS:
            return value
    kwargs = _NO_ARGS
    if plan.params:  # `solve`, inline: one coroutine frame less per dependency with parameters
        kwargs = {}
        for param in plan.params:
            sub = param.dependency
            kwargs[param.name] = param.get(ctx) if sub is None else await solve_dependency(sub, ctx)
    kind = plan.kind
    if kind == COROUTINE:
        value = await plan.call(**kwargs)
    elif kind == FUNCTION:
        value = plan.call(**kwargs)
    else:  # a generator: step it to its `yield`; its teardown is registered on `state`
        gen = plan.call(**kwargs)
        value = await anext(gen, _MISS) if kind == ASYNC_GENERATOR else next(gen, _MISS)
        if value is _MISS:
            raise RuntimeError(f"dependency {plan.name} did not yield a value")
        state.exits.append(gen)
    if dep.use_cache:
        # Two connections may race to create an app-scoped value: keep the first.
        value = state.cache.setdefault(key, value)
    return value


_NO_ARGS: dict[str, Any] = {}
