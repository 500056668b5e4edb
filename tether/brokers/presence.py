"""Presence: who is in a group. The entry format, the diff frame, and `MemoryBroker`'s table.

A connection is present in a group under a `key` the application chooses
(a user id), with a small JSON payload (name, device). One key may be
present from several connections: `presence()` answers each key with the
list of its connections' payloads. Watchers (connections that asked for
presence events) are sent `join`/`leave` diffs, never snapshots:

    {"event":"presence_diff","group":"room:1","joins":{"alice":[{"device":"phone"}]},"leaves":{}}

Each present connection is stored as one entry, `key_json + "\\t" + payload_json`
(compact JSON; neither part can hold a raw tab or newline), so a diff is
assembled from stored entries without decoding or re-encoding them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from tether.brokers.base import Member
from tether.brokers.groups import GroupTable

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_PAYLOAD_BYTES",
    "PresenceTable",
    "decode_entries",
    "diff_frame",
    "encode_entry",
]

MAX_PAYLOAD_BYTES = 1024  # a presence payload's JSON, in UTF-8 bytes
MAX_KEY_BYTES = 256  # a presence key, in UTF-8 bytes

# Strict: only what JSON itself holds (no NaN, no objects converted by a default),
# so what `presence()` answers is what was given.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_decode = json.JSONDecoder().decode


def encode_entry(key: str, payload: Any) -> str:
    """Check a presence key and payload and encode them as one stored entry.

    Raises `TypeError` when `key` is not a str or `payload` is not JSON-able
    (dict, list, str, int, float, bool, None), and `ValueError` when `key` is
    empty or over `MAX_KEY_BYTES`, or the payload's JSON is over
    `MAX_PAYLOAD_BYTES` bytes (or holds NaN or infinity).
    """
    if not isinstance(key, str):
        raise TypeError(f"presence key must be a str, not {type(key).__name__}")
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"presence key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8: {key!r:.80}")
    try:
        payload_json = _ENCODER.encode(payload)
    except TypeError as exc:
        raise TypeError(
            f"presence payload must be JSON-able (dict, list, str, int, float, bool, None): {exc}"
        ) from None
    except ValueError as exc:
        raise ValueError(f"presence payload must be JSON-able: {exc}") from None
    size = len(payload_json.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"presence payload is {size} bytes of JSON, over the limit of {MAX_PAYLOAD_BYTES}: "
            "keep it small (an id, a name, a device) and look the rest up by key"
        )
    return _ENCODER.encode(key) + "\t" + payload_json


def split_entry(entry: str) -> tuple[str, str]:
    """An entry's `(key_json, payload_json)`."""
    key_json, _, payload_json = entry.partition("\t")
    return key_json, payload_json


def decode_entries(entries: Iterable[str]) -> dict[str, list[Any]]:
    """`{key: [payload, ...]}` from stored entries (what `presence()` answers)."""
    members: dict[str, list[Any]] = {}
    for entry in entries:
        key_json, payload_json = split_entry(entry)
        members.setdefault(_decode(key_json), []).append(_decode(payload_json))
    return members


def _object(entries: Iterable[str]) -> str:
    by_key: dict[str, list[str]] = {}
    for entry in entries:
        key_json, payload_json = split_entry(entry)
        by_key.setdefault(key_json, []).append(payload_json)
    return "{" + ",".join(f"{k}:[{','.join(p)}]" for k, p in by_key.items()) + "}"


def diff_frame(group: str, joins: Iterable[str], leaves: Iterable[str]) -> dict[str, Any]:
    """The ASGI message that tells watchers of `group` who joined and who left."""
    head = '{"event":"presence_diff","group":' + _ENCODER.encode(group)
    text = f'{head},"joins":{_object(joins)},"leaves":{_object(leaves)}}}'
    return {"type": "websocket.send", "text": text}


class PresenceTable:
    """Presence within one process: `MemoryBroker`'s, exact and immediate.

    Entries are keyed by group and member identity; a count per key keeps
    `count()` O(1). Mutations take a lock, as `GroupTable`'s do, since one
    broker may serve event loops in several threads.
    """

    __slots__ = ("_counts", "_entries", "_lock", "_tracked", "watchers")

    def __init__(self) -> None:
        self._entries: dict[str, dict[int, str]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._tracked: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self.watchers = GroupTable()

    def track(self, group: str, member: Member, entry: str) -> None:
        """Make `member` present in `group` with `entry`; tell the watchers."""
        ident = id(member)
        with self._lock:
            entries = self._entries.setdefault(group, {})
            old = entries.get(ident)
            if old == entry:
                return
            if old is not None:
                self._forget(group, ident)
                entries = self._entries.setdefault(group, {})
            entries[ident] = entry
            counts = self._counts.setdefault(group, {})
            key_json = split_entry(entry)[0]
            counts[key_json] = counts.get(key_json, 0) + 1
            self._tracked.setdefault(ident, set()).add(group)
        self.watchers.deliver(group, diff_frame(group, [entry], [] if old is None else [old]), None)

    def untrack(self, group: str, member: Member) -> None:
        """Remove `member` from `group`'s presence (idempotent); tell the watchers."""
        with self._lock:
            entry = self._forget(group, id(member))
        if entry is not None:
            self.watchers.deliver(group, diff_frame(group, [], [entry]), None)

    def untrack_all(self, member: Member) -> None:
        """Remove `member` from every group's presence and stop its presence events."""
        self.watchers.discard_all(member)
        with self._lock:
            groups = self._tracked.get(id(member))
            left = [(g, self._forget(g, id(member))) for g in list(groups or ())]
        for group, entry in left:
            if entry is not None:
                self.watchers.deliver(group, diff_frame(group, [], [entry]), None)

    def _forget(self, group: str, ident: int) -> str | None:
        entries = self._entries.get(group)
        entry = None if entries is None else entries.pop(ident, None)
        if entry is None:
            return None
        if not entries:
            del self._entries[group]
        counts = self._counts[group]
        key_json = split_entry(entry)[0]
        counts[key_json] -= 1
        if not counts[key_json]:
            del counts[key_json]
            if not counts:
                del self._counts[group]
        groups = self._tracked[ident]
        groups.discard(group)
        if not groups:
            del self._tracked[ident]
        return entry

    def members(self, group: str) -> dict[str, list[Any]]:
        """`{key: [payload, ...]}` for `group`."""
        with self._lock:
            entries = list(self._entries.get(group, {}).values())
        return decode_entries(entries)

    def count(self, group: str) -> int:
        """How many distinct keys are present in `group`."""
        return len(self._counts.get(group, ()))

    def counts(self) -> dict[str, tuple[int, int]]:
        """`{group: (distinct keys, connections)}` for every group with presence."""
        with self._lock:
            return {
                group: (len(self._counts.get(group, ())), len(entries))
                for group, entries in self._entries.items()
            }
