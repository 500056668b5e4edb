"""One connection's groups: its broker subscriptions and its outbound queue."""

from __future__ import annotations

from typing import Any, Literal

from starlette.types import Send
from starlette.websockets import WebSocketState

from tether.brokers import CLOSE_TRY_AGAIN_LATER, Broker, OutboundQueue
from tether.controllers.websocket import WebSocket


class Membership:
    """The groups a connection belongs to, and the queue their messages wait in.

    Made on the connection's first `join`. Messages published to its groups
    wait in a bounded `OutboundQueue`, which the connection's delivery task
    drains into the websocket; `close()` leaves every group.
    """

    __slots__ = ("broker", "queue", "send", "websocket")

    def __init__(
        self,
        broker: Broker,
        websocket: WebSocket,
        send: Send,
        *,
        maxsize: int,
        policy: Literal["drop_oldest", "close"],
    ) -> None:
        self.broker = broker
        self.websocket = websocket
        self.send = send
        self.queue = OutboundQueue(self._send, maxsize=maxsize, policy=policy)

    async def join(self, group: str) -> None:
        await self.broker.subscribe(group, self.queue)

    async def leave(self, group: str) -> None:
        await self.broker.unsubscribe(group, self.queue)

    async def publish(self, group: str, message: Any, *, exclude_self: bool) -> None:
        await self.broker.publish(group, message, exclude=self.queue if exclude_self else None)

    async def _send(self, message: dict[str, Any]) -> None:
        """The queue's way out: the ASGI send, while the connection is open."""
        websocket = self.websocket
        if websocket.application_state is not WebSocketState.CONNECTED:
            self.queue.close()  # the connection closed while messages waited: drop them
            return
        if message["type"] == "websocket.close":  # the queue overflowed under policy "close"
            websocket.application_state = WebSocketState.DISCONNECTED
            websocket.close_code = CLOSE_TRY_AGAIN_LATER
            websocket.close_reason = message.get("reason")
        await self.send(message)

    async def close(self) -> None:
        """Stop delivering and leave every group (idempotent)."""
        self.queue.close()
        await self.broker.unsubscribe_all(self.queue)
