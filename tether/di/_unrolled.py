"""Unrolled resolvers: a hook's parameters resolved by straight-line code, written once.

`solve` walks a plan's parameters and their dependencies in loops, and at
every step looks up what kind of value it has: a request value or a
dependency, which scope, cached or not, a coroutine or a generator. For a
hook that runs on every connection or message those answers never change,
so `unroll` writes them down once, when the class is defined: the result is
one coroutine function whose body resolves each parameter and dependency in
turn, making exactly the cache lookups, calls and generator steps that
`solve` would make, in the same order. No loop, no per-step branching on the
plan, and one coroutine for the whole hook instead of one per dependency.

While an `override` is active it defers to `solve`, which looks up the
replacement of every dependency as it goes.
"""

from __future__ import annotations

import linecache
from collections.abc import Awaitable, Callable
from typing import Any

from tether.di.compiler import (
    APP,
    ASYNC_GENERATOR,
    COROUTINE,
    FUNCTION,
    GENERATOR,
    MESSAGE,
    CallPlan,
    ConfigurationError,
    Param,
)
from tether.di.resolver import (
    _APP_CONTEXT,
    _MISS,
    PLAIN_TYPES,
    Context,
    app_scope,
    overrides,
    returns_awaitable,
    solve,
)

Resolver = Callable[[Context], Awaitable[dict[str, Any]]]


def unroll(params: tuple[Param, ...], where: str) -> Resolver:
    """A coroutine function resolving `params` as `solve(params, ctx)` does, unrolled.

    `where` names the hook in tracebacks (`"Chat.on_connect"`).
    """
    writer = _Writer()
    returned = ", ".join(f"{param.name!r}: {writer.value(param, 'ctx', 1)}" for param in params)
    source = "\n".join(
        [
            "async def resolve(ctx):",
            "    if overrides:",
            "        return await solve(params, ctx)",
            *writer.lines,
            f"    return {{{returned}}}",
        ]
    )
    filename = f"<tether: the resolver of {where}>"
    # Tracebacks through the resolver then show its lines, like any other code.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {
        **writer.names,
        "params": params,
        "overrides": overrides,
        "solve": solve,
        "MISS": _MISS,
        "app_scope": app_scope,
        "app_ctx": _APP_CONTEXT,
        "anext": anext,
        "PLAIN_TYPES": PLAIN_TYPES,
        "returns_awaitable": returns_awaitable,
        "no_scope": _no_scope,
        "no_value": _no_value,
    }
    exec(compile(source, filename, "exec"), namespace)
    return namespace["resolve"]


class _Writer:
    """Writes the statements resolving parameters; each value lands in a local `v<n>`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}  # the objects the statements refer to, by name
        self._named: dict[int, str] = {}
        self.count = 0

    def name_of(self, obj: Any, prefix: str) -> str:
        name = self._named.get(id(obj))
        if name is None:
            name = self._named[id(obj)] = f"{prefix}{len(self.names)}"
            self.names[name] = obj
        return name

    def local(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def value(self, param: Param, ctx: str, depth: int) -> str:
        """Write the statements that resolve `param` from context `ctx`; return their local."""
        dep = param.dependency
        var = self.local("v")
        if dep is None:
            self.emit(depth, f"{var} = {self.name_of(param.get, 'get')}({ctx})")
            return var
        plan = dep.plan
        # As in `solve_dependency`: an app-scoped value is resolved from the app's context.
        if dep.level == APP:
            state, ctx = "app_scope", "app_ctx"
        else:
            state = self.local("s")
            where = "message" if dep.level == MESSAGE else "connection"
            self.emit(depth, f"{state} = {ctx}.{where}")
            self.emit(depth, f"if {state} is None:")
            self.emit(depth + 1, f"raise no_scope({self.name_of(plan, 'plan')})")
        call = self.name_of(plan.call, "call")
        if dep.use_cache:
            self.emit(depth, f"{var} = {state}.cache.get({call}, MISS)")
            self.emit(depth, f"if {var} is MISS:")
            depth += 1
        self.call(plan, var, state, ctx, depth)
        if dep.use_cache:
            # Two connections may race to create an app-scoped value: keep the first.
            self.emit(depth, f"{var} = {state}.cache.setdefault({call}, {var})")
        return var

    def call(self, plan: CallPlan, var: str, state: str, ctx: str, depth: int) -> None:
        """Write the call of a dependency whose value goes to `var`."""
        args = ", ".join(f"{p.name}={self.value(p, ctx, depth)}" for p in plan.params)
        call = f"{self.name_of(plan.call, 'call')}({args})"
        if plan.kind == COROUTINE:
            self.emit(depth, f"{var} = await {call}")
        elif plan.kind == FUNCTION:
            self.emit(depth, f"{var} = {call}")
            if not isinstance(plan.call, type):  # a class's instance is the value, as written
                # A plain def may hand back a coroutine (a sync decorator around an
                # async function): its value is what the coroutine returns.
                self.emit(
                    depth,
                    f"if type({var}) not in PLAIN_TYPES and returns_awaitable({var}):",
                )
                self.emit(depth + 1, f"{var} = await {var}")
        else:  # a generator: step it to its `yield`; its teardown is registered on the scope
            gen = self.local("g")
            self.emit(depth, f"{gen} = {call}")
            step = "await anext" if plan.kind == ASYNC_GENERATOR else "next"
            assert plan.kind in (ASYNC_GENERATOR, GENERATOR)
            self.emit(depth, f"{var} = {step}({gen}, MISS)")
            self.emit(depth, f"if {var} is MISS:")
            self.emit(depth + 1, f"raise no_value({self.name_of(plan, 'plan')})")
            self.emit(depth, f"{state}.exits.append({gen})")


def _no_scope(plan: CallPlan) -> ConfigurationError:
    return ConfigurationError(f"{plan.name}: no open scope to resolve it in")


def _no_value(plan: CallPlan) -> RuntimeError:
    return RuntimeError(f"dependency {plan.name} did not yield a value")
