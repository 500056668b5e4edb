"""The app each uvicorn worker of the load test serves: every connection joins one group.

The Redis URL comes from `TETHER_LOAD_REDIS`; on join the client is told which worker
(process id) holds it, so the harness can show how connections spread over workers.
Each worker names its Redis connections `tether-load-<pid>` (so the harness can find
them in `CLIENT LIST`) and, given `TETHER_LOAD_COUNTS`, reports its counts there (see
`benchmarks.load.counts`).
"""

from __future__ import annotations

import os

from starlette.types import Receive, Scope, Send

from benchmarks.load.counts import report_on_signal
from tether import WebSocket, WebSocketController
from tether.brokers import RedisBroker

GROUP = "all"
CLIENT_NAME = "tether-load-{pid}"


class Listener(WebSocketController):
    """Joins `all` on connect and only listens: the harness broadcasts through Redis."""

    broker = RedisBroker(
        os.environ.get("TETHER_LOAD_REDIS", "redis://127.0.0.1:6379/0"),
        client_name=CLIENT_NAME.format(pid=os.getpid()),
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set up as any controller; the lifespan instance also starts the counts report."""
        super().__init__(scope, receive, send)
        # The lifespan scope arrives once per worker, on its running loop, before
        # any connection: the place to install the report without another task.
        if scope["type"] == "lifespan":
            report_on_signal(self.broker, Listener)

    async def on_connect(self, websocket: WebSocket) -> None:
        """Accept, join the group (confirmed by Redis), then say which worker this is."""
        await websocket.accept()
        await self.join(GROUP)
        await websocket.send_text(f"joined {os.getpid()}")


app = Listener
