"""The app each uvicorn worker of the load test serves: every connection joins one group.

The Redis URL comes from `TETHER_LOAD_REDIS`; on join the client is told which worker
(process id) holds it, so the harness can show how connections spread over workers.
"""

from __future__ import annotations

import os

from tether import WebSocket, WebSocketController
from tether.brokers import RedisBroker

GROUP = "all"


class Listener(WebSocketController):
    """Joins `all` on connect and only listens: the harness broadcasts through Redis."""

    broker = RedisBroker(os.environ.get("TETHER_LOAD_REDIS", "redis://127.0.0.1:6379/0"))

    async def on_connect(self, websocket: WebSocket) -> None:
        """Accept, join the group (confirmed by Redis), then say which worker this is."""
        await websocket.accept()
        await self.join(GROUP)
        await websocket.send_text(f"joined {os.getpid()}")


app = Listener
