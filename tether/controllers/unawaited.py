"""Calls to `self.join`, `self.leave` or `self.publish` written without `await`.

Such a call makes a coroutine and drops it: the connection never joins, and
Python only warns, much later, that a coroutine was never awaited. The
statement is visible in the method's source, so it is found once, when the
class is defined, and refused with the fix.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from tether.di.compiler import ConfigurationError

# The controller's coroutine methods a user calls from hooks.
GROUP_METHODS = ("join", "leave", "publish")


def refuse_unawaited_calls(cls: type) -> None:
    """Raise `ConfigurationError` where a method of `cls` calls a group method without `await`."""
    methods = frozenset(m for m in GROUP_METHODS if inspect.iscoroutinefunction(getattr(cls, m)))
    if not methods:
        return
    for attr, value in vars(cls).items():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        if inspect.isfunction(func):
            _check(cls.__name__, attr, func, methods)


def _check(owner: str, attr: str, func: Any, methods: frozenset[str]) -> None:
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return  # no source to read (built in a REPL or by exec): nothing to check
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return
    arguments = definition.args.posonlyargs + definition.args.args
    if not arguments:
        return
    receiver = arguments[0].arg  # `self`, however it is spelled
    for node in ast.walk(definition):
        call = node.value if isinstance(node, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr in methods
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == receiver
        ):
            line = func.__code__.co_firstlineno + node.lineno - 1
            method = f"{receiver}.{call.func.attr}"
            raise ConfigurationError(
                f"{owner}.{attr}, line {line}: {method}(...) is not awaited, so it never "
                f"runs: did you forget await? Write `await {method}(...)`"
                + ("" if inspect.iscoroutinefunction(func) else f" and make {attr} async def")
                + "."
            )
