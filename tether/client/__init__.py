"""Clients for tether servers: `Client` (Python, asyncio) and `tether.js` (browsers).

Both speak docs/protocol.md: requests with ids and their replies, server
calls, group messages with positions; both reconnect with `Backoff` and
re-join their groups from the last position. The browser client is served
by `client_route()`.
"""

from tether.client.backoff import Backoff
from tether.client.browser import BROWSER_CLIENT, BROWSER_TYPES, client_route
from tether.controllers.requests import CallError, CallTimeout, RequestError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tether.client.connection import Client, ClientClosed

__all__ = [
    "BROWSER_CLIENT",
    "BROWSER_TYPES",
    "Backoff",
    "CallError",
    "CallTimeout",
    "Client",
    "ClientClosed",
    "RequestError",
    "client_route",
]


def __getattr__(name: str) -> object:
    # `Client` needs the `websockets` package (the `client` extra); a server that only
    # serves tether.js with `client_route` does not.
    if name in ("Client", "ClientClosed"):
        from tether.client import connection

        return getattr(connection, name)
    raise AttributeError(f"module 'tether.client' has no attribute {name!r}")
