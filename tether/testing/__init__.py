"""In-process WebSocket test client for any ASGI app, and a pytest plugin.

The client runs the app on the test's own event loop (asyncio or trio, through
anyio): no threads, no portals. Every wait is bounded by a timeout, so a test
that expects a message which never comes fails with a message saying what it
was waiting for instead of hanging.

```python
from tether.testing import connect

async with connect(app, "/ws/lobby?name=ada", subprotocols=["chat"]) as ws:
    await ws.send_json({"type": "hello"})
    assert await ws.receive_json() == {"type": "welcome"}
```

Apps with a lifespan (app-scoped resources, `state`) are started first:

```python
async with AppClient(app) as client:           # lifespan startup
    async with client.connect("/ws") as ws:     # scope["state"] is the lifespan state
        ...
                                                # lifespan shutdown
```

The package holds one module per concept: `session` (a connection and
`connect()`), `scope` (the handshake's ASGI scope), `lifespan`, `client`
(`AppClient`), `errors`, `redis` (`RedisServer`, a real `redis-server` for
tests) and `plugin` (the pytest fixtures `app_client`, `ws_connect` and
`redis_server`, registered as the `tether` entry point).
"""

from tether.testing.client import AppClient
from tether.testing.errors import (
    ClientDisconnected,
    HandshakeRejected,
    LifespanFailed,
    ReceiveTimeout,
    ServerClosed,
)
from tether.testing.lifespan import lifespan
from tether.testing.session import WebSocketSession, connect

__all__ = [
    "AppClient",
    "ClientDisconnected",
    "HandshakeRejected",
    "LifespanFailed",
    "ReceiveTimeout",
    "ServerClosed",
    "WebSocketSession",
    "connect",
    "lifespan",
]
