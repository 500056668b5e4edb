"""Calls to `self.join`, `self.leave` or `self.publish` written without `await`.

Such a call makes a coroutine and drops it: the connection never joins, and
Python only warns, much later, that a coroutine was never awaited. The
statement is visible in the source, so it is found once, when the class is
defined, and refused with the fix.

A source file is parsed once, on the first class of it that needs a look,
and only the bare calls it holds are kept; a method is looked at only when
its code names one of the methods at all.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import types
from typing import Any

from tether.di.compiler import ConfigurationError

# The controller's coroutine methods a user calls from hooks.
GROUP_METHODS = ("join", "leave", "publish")

# A statement `receiver.method(...)`: its line, the receiver's name and the method.
BareCall = tuple[int, str, str]

# Per source file: the lines it was parsed from, and its bare calls.
_scanned: dict[str, tuple[list[str], tuple[BareCall, ...]]] = {}


def refuse_unawaited_calls(cls: type) -> None:
    """Raise `ConfigurationError` where a method of `cls` calls a group method without `await`."""
    methods = frozenset(m for m in GROUP_METHODS if inspect.iscoroutinefunction(getattr(cls, m)))
    if not methods:
        return
    for attr, value in vars(cls).items():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        if inspect.isfunction(func) and _names_any(func.__code__, methods):
            _check(cls.__name__, attr, func, methods)


def _names_any(code: types.CodeType, names: frozenset[str]) -> bool:
    """Whether `code` (or a function nested in it) uses any of `names` as an attribute."""
    if not names.isdisjoint(code.co_names):
        return True
    return any(isinstance(c, types.CodeType) and _names_any(c, names) for c in code.co_consts)


def _check(owner: str, attr: str, func: Any, methods: frozenset[str]) -> None:
    code = func.__code__
    if code.co_argcount == 0:
        return
    receiver = code.co_varnames[0]  # `self`, however it is spelled
    first = code.co_firstlineno
    last = max((line for _, _, line in code.co_lines() if line is not None), default=first)
    for line, name, method in _bare_calls(code.co_filename):
        if first <= line <= last and name == receiver and method in methods:
            call = f"{receiver}.{method}"
            raise ConfigurationError(
                f"{owner}.{attr}, line {line}: {call}(...) is not awaited, so it never "
                f"runs: did you forget await? Write `await {call}(...)`"
                + ("" if inspect.iscoroutinefunction(func) else f" and make {attr} async def")
                + "."
            )


def _bare_calls(filename: str) -> tuple[BareCall, ...]:
    """Every `name.method(...)` statement (a call whose result is dropped) in a source file."""
    lines = linecache.getlines(filename)
    cached = _scanned.get(filename)
    if cached is not None and cached[0] is lines:
        return cached[1]
    try:
        tree = ast.parse("".join(lines), filename)
    except (SyntaxError, ValueError):
        tree = None  # no source to read (a REPL, exec): nothing to check
    found = tuple(
        (node.lineno, node.value.func.value.id, node.value.func.attr)
        for node in (ast.walk(tree) if tree is not None else ())
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr in GROUP_METHODS
        and isinstance(node.value.func.value, ast.Name)
    )
    _scanned[filename] = (lines, found)
    return found
