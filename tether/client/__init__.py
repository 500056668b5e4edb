"""Clients for tether servers: `Client` (Python, asyncio) and `tether.js` (browsers).

Both speak docs/protocol.md: requests with ids and their replies, server
calls, group messages with positions; both reconnect with `Backoff` and
re-join their groups from the last position. The browser client is served
by `client_route()`.
"""

from tether.client.backoff import Backoff
from tether.client.connection import Client, ClientClosed
from tether.controllers.requests import CallError, CallTimeout, RequestError

__all__ = ["Backoff", "CallError", "CallTimeout", "Client", "ClientClosed", "RequestError"]
