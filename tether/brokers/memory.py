"""`MemoryBroker`: groups within one process, the default broker."""

from __future__ import annotations

from typing import Any

from tether.brokers.base import Broker, Member
from tether.brokers.groups import GroupTable
from tether.frames import encode_frame

__all__ = ["MemoryBroker"]


class MemoryBroker(Broker):
    """Fan-out to members in this process, with no configuration.

    Works under asyncio and trio, and binds to no event loop: one instance
    (for example a module-level default) keeps working when connections run on
    different loops in different threads, as under Starlette's `TestClient`.
    Delivery is a plain call to each member's `deliver`, so `publish` costs one
    encode plus one call per member and never waits for a slow one.

    To fan out across processes or machines, use `RedisBroker`.
    """

    def __init__(self) -> None:
        self._table = GroupTable()

    async def subscribe(self, group: str, member: Member) -> None:
        """Add `member` to `group`; confirmed as soon as this returns."""
        self._table.add(group, member)

    async def unsubscribe(self, group: str, member: Member) -> None:
        """Remove `member` from `group`. Idempotent."""
        self._table.discard(group, member)

    async def unsubscribe_all(self, member: Member) -> None:
        """Remove `member` from every group. Idempotent, never suspends."""
        self._table.discard_all(member)

    async def publish(self, group: str, message: Any, *, exclude: Member | None = None) -> None:
        """Encode `message` once and deliver it to every member of `group` but `exclude`.

        Delivery is synchronous: when this returns, every member's queue holds
        the message. It does not yield to the event loop (a yield would cost
        more than the fan-out to a small group); a job that publishes in a
        tight loop should `await anyio.sleep(0)` now and then.
        """
        self._table.deliver(group, encode_frame(message), exclude)

    def groups(self) -> list[str]:
        """The groups that have at least one member."""
        return self._table.groups()

    def members(self, group: str) -> tuple[Member, ...]:
        """The members of `group` right now."""
        return self._table.members(group)
