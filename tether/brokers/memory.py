"""`MemoryBroker`: groups within one process, the default broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from tether.brokers.base import Broker, Member
from tether.brokers.groups import GroupTable
from tether.brokers.history import GroupHistory, GroupLog, HistoryPolicy
from tether.brokers.positions import (
    NOT_KEPT,
    HistoryPage,
    Position,
    Recovery,
    check_limit,
    recovery_of,
    room_for,
)
from tether.brokers.presence import PresenceTable, encode_entry
from tether.frames import dumps, encode_frame

__all__ = ["MemoryBroker"]

_SWEEP_EVERY = 1.0  # seconds between looks for expired histories, at most


class MemoryBroker(Broker):
    """Fan-out to members in this process, with no configuration.

    Works under asyncio and trio, and binds to no event loop: one instance
    (for example a module-level default) keeps working when connections run on
    different loops in different threads, as under Starlette's `TestClient`.
    Delivery is a plain call to each member's `deliver`, so `publish` costs one
    encode plus one call per member and never waits for a slow one.

    `history=` makes groups keep their recent messages (see `GroupHistory`):
    a bounded ring per group, in this process, forgotten `ttl` seconds after
    the group's last publish. Each broker instance starts new epochs, so a
    position from before a restart answers `recovered=False`.

    To fan out across processes or machines, use `RedisBroker`.
    """

    def __init__(
        self, *, history: GroupHistory | Mapping[str, GroupHistory | None] | None = None
    ) -> None:
        """`history`: which groups keep history (see `HistoryPolicy`); None keeps none."""
        self._table = GroupTable()
        self._presence = PresenceTable()
        self._policy = HistoryPolicy(history) if history is not None else None
        self._logs: dict[str, GroupLog] = {}
        # Appending to a history and delivering happen together, so a recovering
        # member's replay and its first live message never overlap or leave a gap.
        self._history_lock = threading.Lock()
        self._next_sweep = 0.0
        self._sweep_every = min(_SWEEP_EVERY, self._policy.shortest_ttl if self._policy else 1.0)

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
        tight loop should `await anyio.sleep(0)` now and then. In a group that
        keeps history the message is kept first, and members get it in its
        envelope.
        """
        if self._policy is not None:
            config = self._policy.of(group)
            if config is not None:
                self._publish_kept(group, config, message, exclude)
                return
        self._table.deliver(group, encode_frame(message), exclude)

    def history_of(self, group: str) -> GroupHistory | None:
        """The history `group` keeps, or None."""
        return None if self._policy is None else self._policy.of(group)

    async def recover(self, group: str, member: Member, since: Position | None) -> Recovery:
        """Subscribe `member`, first delivering what it missed after `since` (see `Broker`)."""
        config = self.history_of(group)
        if config is None:
            self._table.add(group, member)
            return NOT_KEPT
        with self._history_lock:
            log = self._log(group, config, time.monotonic())
            if since is None:
                replay, recovered, reason = [], False, "new"
            else:
                replay = log.after(since.offset) if since.epoch == log.epoch else []
                first = replay[0]["position"].offset if replay else None
                recovered, reason = recovery_of(since, log.epoch, log.top, first)
                room = room_for(member)
                if recovered and room is not None and len(replay) > room:
                    recovered, reason = False, "overflow"
                if not recovered:
                    replay = []
            for frame in replay:
                member.deliver(frame)
            self._table.add(group, member)
            return Recovery(recovered, log.position, len(replay), reason)

    async def history(
        self, group: str, *, since: Position | None = None, limit: int | None = None
    ) -> HistoryPage:
        """Read `group`'s history (see `Broker.history`)."""
        check_limit(limit)
        config = self.history_of(group)
        if config is None:
            return HistoryPage([], None, False)
        with self._history_lock:
            return self._log(group, config, time.monotonic()).read(since, limit)

    async def track(self, group: str, member: Member, key: str, payload: Any = None) -> None:
        """Make `member` present in `group` (see `Broker.track`); watchers hear at once."""
        self._presence.track(group, member, encode_entry(key, payload))

    async def untrack(self, group: str, member: Member) -> None:
        """Remove `member` from `group`'s presence. Idempotent."""
        self._presence.untrack(group, member)

    async def untrack_all(self, member: Member) -> None:
        """Remove `member` from every group's presence and stop its presence events."""
        self._presence.untrack_all(member)

    async def watch_presence(self, group: str, member: Member) -> None:
        """Send `member` the presence diffs of `group`."""
        self._presence.watchers.add(group, member)

    async def unwatch_presence(self, group: str, member: Member) -> None:
        """Stop sending `member` the presence diffs of `group`."""
        self._presence.watchers.discard(group, member)

    async def presence(self, group: str) -> dict[str, list[Any]]:
        """Who is present in `group`, exactly, now."""
        return self._presence.members(group)

    async def presence_count(self, group: str) -> int:
        """How many distinct keys are present in `group` (O(1))."""
        return self._presence.count(group)

    def presence_counts(self) -> dict[str, tuple[int, int]]:
        """`{group: (distinct keys, connections)}` present now, for every group with presence.

        Synchronous and exact: what `TetherMetrics` reads at scrape time.
        """
        return self._presence.counts()

    def groups(self) -> list[str]:
        """The groups that have at least one member."""
        return self._table.groups()

    def members(self, group: str) -> tuple[Member, ...]:
        """The members of `group` right now."""
        return self._table.members(group)

    def _publish_kept(
        self, group: str, config: GroupHistory, message: Any, exclude: Member | None
    ) -> None:
        # encode_data, inline: this runs once per publish to a group with history.
        if type(message) is not dict and isinstance(message, (bytes, bytearray, memoryview)):
            data: str | bytes = bytes(message)
        else:  # a dict, the common case, skips isinstance's three failing checks
            data = dumps(message)
        now = time.monotonic()
        lock = self._history_lock
        lock.acquire()  # not `with`: its special-method lookups cost more than the fan-out to one
        try:
            log = self._logs.get(group)
            # The common case without the call: a live log and no sweep due.
            if (
                log is None
                or now >= self._next_sweep
                or log.expires <= now
                or log.config is not config
            ):
                log = self._log(group, config, now)
            self._table.deliver(group, log.append(data, now), exclude)
        finally:
            lock.release()

    def _log(self, group: str, config: GroupHistory, now: float) -> GroupLog:
        """The group's live history, made afresh (a new epoch) when missing or expired."""
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            for name in [name for name, log in self._logs.items() if log.expires <= now]:
                del self._logs[name]
        log = self._logs.get(group)
        if log is None or log.expires <= now or log.config is not config:
            log = self._logs[group] = GroupLog(group, config, now)
        return log
