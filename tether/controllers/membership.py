"""One connection's groups: its broker subscriptions and its outbound queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from starlette.types import Send

from tether.brokers import Broker, OutboundQueue
from tether.brokers.positions import NOT_KEPT, Position, Recovery
from tether.brokers.presence import encode_entry
from tether.controllers.websocket import WebSocket

if TYPE_CHECKING:
    from tether.metrics.connection import ConnectionStats

MALFORMED = Recovery(False, None, reason="malformed")


class Membership:
    """The groups a connection belongs to, and the queue their messages wait in.

    Made on the connection's first `join`. Messages published to its groups
    wait in a bounded `OutboundQueue`, which the connection's delivery task
    drains into the websocket; `close()` leaves every group.
    """

    __slots__ = ("broker", "presence", "queue", "stats", "websocket")

    def __init__(
        self,
        broker: Broker,
        websocket: WebSocket,
        send: Send,
        *,
        maxsize: int,
        policy: Literal["drop_oldest", "close"],
        stats: ConnectionStats | None = None,
    ) -> None:
        self.broker = broker
        self.websocket = websocket
        # The raw ASGI send (counting, with metrics): the queue checks the state itself.
        self.queue = OutboundQueue(send, maxsize=maxsize, policy=policy, websocket=websocket)
        self.stats = stats
        if stats is not None:
            stats.queue = self.queue  # its depth and drops are read at scrape time
        # Groups this connection is present in or watches: None until it does, so
        # a connection without presence leaves its groups as it did before presence.
        self.presence: set[str] | None = None

    async def join_present(
        self,
        group: str,
        since: Position | str | None,
        key: str,
        payload: Any,
        *,
        present: bool,
        events: bool,
    ) -> Recovery:
        """`join`, then watch the group's presence diffs and/or become present in it.

        The broker, the key and the payload are checked first, so a refusal
        (`NotImplementedError` from a broker that keeps no presence, `TypeError`
        or `ValueError` for a bad key or payload) leaves the connection where it was.
        """
        if not self.broker.keeps_presence:
            raise NotImplementedError(
                f"{type(self.broker).__name__} keeps no presence: join {group!r} without "
                "presence, or use a broker that keeps it (MemoryBroker, RedisBroker, "
                "RedisClusterBroker)"
            )
        if present:
            encode_entry(key, payload)
        result = await self.join(group, since)
        if self.presence is None:
            self.presence = set()
        self.presence.add(group)
        if events:
            await self.broker.watch_presence(group, self.queue)
        if present:
            await self.broker.track(group, self.queue, key, payload)
        return result

    async def join(self, group: str, since: Position | str | None) -> Recovery:
        """Subscribe; in a group with history, replay what came after `since` first.

        A group without history costs one `subscribe`, as before history
        existed. A malformed `since` (a client's bad input) is no error: the
        connection joins live and hears `recovered=False, reason="malformed"`.
        """
        recovery = await self._join(group, since)
        if self.stats is not None:
            self.stats.joined(since, recovery)
        return recovery

    async def _join(self, group: str, since: Position | str | None) -> Recovery:
        broker = self.broker
        if since is None and broker.history_of(group) is None:
            await broker.subscribe(group, self.queue)
            return NOT_KEPT
        if since is not None and not isinstance(since, Position):
            try:
                since = Position.parse(since)
            except ValueError:
                result = await broker.recover(group, self.queue, None)
                return Recovery(False, result.position, 0, MALFORMED.reason)
        return await broker.recover(group, self.queue, since)

    async def leave(self, group: str) -> None:
        if self.presence is not None and group in self.presence:
            self.presence.discard(group)
            await self.broker.untrack(group, self.queue)
            await self.broker.unwatch_presence(group, self.queue)
        await self.broker.unsubscribe(group, self.queue)

    async def publish(self, group: str, message: Any, *, exclude_self: bool) -> None:
        await self.broker.publish(group, message, exclude=self.queue if exclude_self else None)

    async def close(self) -> None:
        """Stop delivering and leave every group (idempotent)."""
        self.queue.close()
        await self.broker.unsubscribe_all(self.queue)
        if self.presence is not None:
            self.presence = None
            await self.broker.untrack_all(self.queue)
