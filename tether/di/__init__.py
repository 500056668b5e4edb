"""Dependency injection: markers, the signature compiler and the scoped resolver.

Usable on its own: compile a callable's signature once with
`compile_dependency`, then resolve its parameters per call with `solve`,
given a `Context` (the websocket and the open scopes, each a `ScopeState`
whose `aclose()` runs the teardowns). Everything else in the subpackage is
tether's own machinery.
"""

from tether.di.compiler import CallPlan, ConfigurationError, ParameterError, compile_dependency
from tether.di.markers import Cookie, Header, Provide, Query
from tether.di.resolver import Context, ScopeState, override, solve

__all__ = [
    "CallPlan",
    "ConfigurationError",
    "Context",
    "Cookie",
    "Header",
    "ParameterError",
    "Provide",
    "Query",
    "ScopeState",
    "compile_dependency",
    "override",
    "solve",
]
