"""The in-process routing table shared by every broker: group -> local members."""

from __future__ import annotations

import threading
from typing import Any

from tether.brokers.base import Member

__all__ = ["GroupTable"]


class GroupTable:
    """Which local members belong to which group, and delivery to them.

    Members are keyed by identity. Each group keeps a cached tuple of its
    members, rebuilt only after the group changes, so a publish neither copies
    the group nor trips over a member leaving while it is being delivered to.
    Mutations take a lock, because one table may be shared by event loops in
    several threads; delivery does not.
    """

    __slots__ = ("_groups", "_lock", "_memberships", "_snapshots")

    def __init__(self) -> None:
        self._groups: dict[str, dict[int, Member]] = {}
        self._memberships: dict[int, set[str]] = {}
        self._snapshots: dict[str, tuple[Member, ...]] = {}
        self._lock = threading.Lock()

    def add(self, group: str, member: Member) -> bool:
        """Add `member` to `group`; return True if the group had no members before."""
        key = id(member)
        with self._lock:
            members = self._groups.get(group)
            created = members is None
            if members is None:
                members = self._groups[group] = {}
            members[key] = member
            self._memberships.setdefault(key, set()).add(group)
            self._snapshots.pop(group, None)
        return created

    def discard(self, group: str, member: Member) -> bool:
        """Remove `member` from `group`; return True if that emptied the group."""
        key = id(member)
        with self._lock:
            return self._discard(group, key)

    def discard_all(self, member: Member) -> list[str]:
        """Remove `member` from all its groups; return the groups that became empty."""
        key = id(member)
        with self._lock:
            groups = self._memberships.get(key)
            if not groups:
                return []
            return [group for group in list(groups) if self._discard(group, key)]

    def _discard(self, group: str, key: int) -> bool:
        members = self._groups.get(group)
        if members is None or members.pop(key, None) is None:
            return False
        groups = self._memberships[key]
        groups.discard(group)
        if not groups:
            del self._memberships[key]
        self._snapshots.pop(group, None)
        if members:
            return False
        del self._groups[group]
        return True

    def members(self, group: str) -> tuple[Member, ...]:
        """The members of `group` right now (an immutable snapshot)."""
        snapshot = self._snapshots.get(group)
        if snapshot is None:
            with self._lock:
                members = self._groups.get(group)
                if not members:
                    return ()
                snapshot = self._snapshots[group] = tuple(members.values())
        return snapshot

    def groups(self) -> list[str]:
        """The groups that have at least one member."""
        with self._lock:
            return list(self._groups)

    def __contains__(self, group: object) -> bool:
        return group in self._groups

    def deliver(self, group: str, message: dict[str, Any], exclude: Member | None) -> None:
        """Hand `message` to every member of `group` except `exclude`."""
        if exclude is None:
            for member in self.members(group):
                member.deliver(message)
        else:
            for member in self.members(group):
                if member is not exclude:
                    member.deliver(message)
