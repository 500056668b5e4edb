"""Dependency injection: markers, the signature compiler and the scoped resolver.

Usable on its own: compile a callable's signature once with
`compile_dependency`, then resolve it per call with `solve`.
"""

from tether.di.compiler import (
    CallPlan,
    ConfigurationError,
    ParameterError,
    compile_dependency,
    compile_hook,
)
from tether.di.markers import Cookie, Header, Provide, Query, Required, Scope
from tether.di.resolver import Context, ScopeState, app_scope, override, solve

__all__ = [
    "CallPlan",
    "ConfigurationError",
    "Context",
    "Cookie",
    "Header",
    "ParameterError",
    "Provide",
    "Query",
    "Required",
    "Scope",
    "ScopeState",
    "app_scope",
    "compile_dependency",
    "compile_hook",
    "override",
    "solve",
]
