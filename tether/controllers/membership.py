"""One connection's groups: its broker subscriptions and its outbound queue."""

from __future__ import annotations

from typing import Any, Literal

from starlette.types import Send

from tether.brokers import Broker, OutboundQueue
from tether.controllers.websocket import WebSocket


class Membership:
    """The groups a connection belongs to, and the queue their messages wait in.

    Made on the connection's first `join`. Messages published to its groups
    wait in a bounded `OutboundQueue`, which the connection's delivery task
    drains into the websocket; `close()` leaves every group.
    """

    __slots__ = ("broker", "queue", "websocket")

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
        # The raw ASGI send: the queue checks the websocket's state itself.
        self.queue = OutboundQueue(send, maxsize=maxsize, policy=policy, websocket=websocket)

    async def join(self, group: str) -> None:
        await self.broker.subscribe(group, self.queue)

    async def leave(self, group: str) -> None:
        await self.broker.unsubscribe(group, self.queue)

    async def publish(self, group: str, message: Any, *, exclude_self: bool) -> None:
        await self.broker.publish(group, message, exclude=self.queue if exclude_self else None)

    async def close(self) -> None:
        """Stop delivering and leave every group (idempotent)."""
        self.queue.close()
        await self.broker.unsubscribe_all(self.queue)
