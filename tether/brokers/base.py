"""The broker interface: named groups of members, and publishing to them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tether.brokers.positions import NOT_KEPT, HistoryPage, Position, Recovery

if TYPE_CHECKING:
    from tether.brokers.history import GroupHistory

__all__ = ["Broker", "Member"]


@runtime_checkable
class Member(Protocol):
    """Whatever receives group messages, usually a connection's `OutboundQueue`.

    `deliver` gets a ready ASGI message (`{"type": "websocket.send", "text": ...}`
    or `"bytes"`), shared read-only with every other receiver of the same
    publish. It must not block and must not raise: a publisher never waits for
    a slow member. It may be called from another thread when one broker is
    shared by connections running on several event loops (Starlette's
    `TestClient`); `OutboundQueue.deliver` is safe for that.

    Members are told apart by identity, so any object works, hashable or not.
    """

    def deliver(self, message: dict[str, Any]) -> None:
        """Accept one outgoing message without blocking."""


class Broker(ABC):
    """Groups of members and fan-out to them.

    A member joins a group with `subscribe`, leaves it with `unsubscribe`, and
    leaves every group with `unsubscribe_all` (call it when a connection
    closes, on every exit path). `publish` sends one message to every member of
    a group. It works from anywhere: a controller, an HTTP endpoint, a
    background job.

    Brokers connect lazily on first use; `start()` and `stop()` (or
    `async with broker:`) tie them to an application's lifespan instead.
    """

    @abstractmethod
    async def subscribe(self, group: str, member: Member) -> None:
        """Add `member` to `group`; return once the subscription is confirmed.

        Everything published to `group` after this returns reaches `member`.
        Subscribing twice is harmless.
        """

    @abstractmethod
    async def unsubscribe(self, group: str, member: Member) -> None:
        """Remove `member` from `group`. Idempotent; no delivery happens after it returns."""

    @abstractmethod
    async def unsubscribe_all(self, member: Member) -> None:
        """Remove `member` from every group it joined.

        Idempotent, never raises for an unknown member, and safe to await in a
        shielded cleanup scope: the member stops receiving at once, before any
        network round trip.
        """

    @abstractmethod
    async def publish(self, group: str, message: Any, *, exclude: Member | None = None) -> None:
        """Send `message` to every member of `group` except `exclude`.

        `str` goes out as a text frame, `bytes` as a binary frame, anything
        else (dict, list, dataclass, pydantic model, msgspec Struct) as compact
        JSON text with unescaped UTF-8. The message is encoded once per
        publish. Messages from one publisher to one group arrive at every
        member in publish order.
        """

    def history_of(self, group: str) -> GroupHistory | None:
        """The history `group` keeps (its broker's `history=` setting), or None."""
        return None

    async def recover(self, group: str, member: Member, since: Position | None) -> Recovery:
        """Subscribe `member` to `group`, first delivering what it missed after `since`.

        For a group that keeps history: every message after `since` that is
        still kept is delivered to `member`, in order, then live ones, with
        no gap and no duplicate at the seam; the answer says whether that was
        everything (`recovered`) and the group's position. When it was not
        (see `RecoveryFailure`), nothing is replayed and `member` goes live
        from the group's current position. `since=None` replays nothing and
        answers the position. For a group without history this is
        `subscribe` and answers `recovered=False, reason="no_history"`.
        """
        await self.subscribe(group, member)
        return NOT_KEPT

    async def history(
        self, group: str, *, since: Position | None = None, limit: int | None = None
    ) -> HistoryPage:
        """Read `group`'s kept messages after `since`, oldest first, at most `limit`.

        Without `since`, the kept messages (the newest `limit` of them). For
        a group without history, an empty page with `position=None`. Raises
        `ValueError` for a `limit` that is not a positive int.
        """
        return HistoryPage([], None, False)

    @property
    def keeps_presence(self) -> bool:
        """Whether this broker keeps presence (`track`, `presence`, ...): it overrides `track`.

        A controller's `join(presence=...)` checks it before joining, so a
        broker without presence refuses such a join before anything happened.
        """
        return type(self).track is not Broker.track

    async def track(self, group: str, member: Member, key: str, payload: Any = None) -> None:
        """Make `member` present in `group` under `key`, with a small JSON `payload`.

        Watchers of `group` are sent a join diff (see `watch_presence`).
        Tracking again replaces the payload. Raises `TypeError` or
        `ValueError` for a key or payload that is not a small JSON value
        (see `tether.brokers.presence.encode_entry`), and
        `NotImplementedError` on a broker that keeps no presence.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no presence")

    async def untrack(self, group: str, member: Member) -> None:
        """Remove `member` from `group`'s presence (watchers get a leave diff). Idempotent."""
        return None

    async def untrack_all(self, member: Member) -> None:
        """Remove `member` from every group's presence and stop its presence events.

        Idempotent, never raises, safe in a shielded cleanup scope.
        """
        return None

    async def watch_presence(self, group: str, member: Member) -> None:
        """Send `member` the join/leave diffs of `group` (it must also `subscribe`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no presence")

    async def unwatch_presence(self, group: str, member: Member) -> None:
        """Stop sending `member` the presence diffs of `group`. Idempotent."""
        return None

    async def presence(self, group: str) -> dict[str, list[Any]]:
        """Who is present in `group`: `{key: [payload of each of its connections]}`."""
        raise NotImplementedError(f"{type(self).__name__} keeps no presence")

    async def presence_count(self, group: str) -> int:
        """How many distinct keys are present in `group`, without fetching them."""
        raise NotImplementedError(f"{type(self).__name__} keeps no presence")

    async def start(self) -> None:
        """Connect now instead of on first use (call from an app's lifespan startup)."""
        return None  # brokers with nothing to connect need no startup

    async def stop(self) -> None:
        """Release connections and background work (call from lifespan shutdown)."""
        return None

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
