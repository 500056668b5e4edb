"""One connection's groups: its broker subscriptions and its outbound queue."""

from __future__ import annotations

from typing import Any, Literal

from starlette.websockets import WebSocketDisconnect

from tether.brokers import CLOSE_TRY_AGAIN_LATER, Broker, OutboundQueue
from tether.controllers.websocket import WebSocket


class Membership:
    """The groups a connection belongs to, and the queue their messages wait in.

    Made on the connection's first `join`. Messages published to its groups
    wait in a bounded `OutboundQueue` that `deliver()` drains into the
    websocket; `close()` leaves every group.
    """

    __slots__ = ("broker", "queue", "websocket")

    def __init__(
        self,
        broker: Broker,
        websocket: WebSocket,
        *,
        maxsize: int,
        policy: Literal["drop_oldest", "close"],
    ) -> None:
        self.broker = broker
        self.websocket = websocket
        self.queue = OutboundQueue(websocket.send, maxsize=maxsize, policy=policy)

    async def join(self, group: str) -> None:
        await self.broker.subscribe(group, self.queue)

    async def leave(self, group: str) -> None:
        await self.broker.unsubscribe(group, self.queue)

    async def publish(self, group: str, message: Any, *, exclude_self: bool) -> None:
        await self.broker.publish(group, message, exclude=self.queue if exclude_self else None)

    async def deliver(self) -> bool:
        """Send queued messages until closed; return True if the queue overflowed (1013)."""
        try:
            await self.queue.run()
        except (WebSocketDisconnect, OSError):
            return False  # the client left; the receive loop hears of it
        if self.queue.overflowed:
            self.websocket.close_code = CLOSE_TRY_AGAIN_LATER
            self.websocket.close_reason = "outbound queue full"
            return True
        return False

    async def close(self) -> None:
        """Stop delivering and leave every group (idempotent)."""
        self.queue.close()
        await self.broker.unsubscribe_all(self.queue)
