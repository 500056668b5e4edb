"""Positions in a group's history, and what a recovery or a history read answers.

A group that keeps history gives every message a `Position`: `(epoch, offset)`,
offset a strictly increasing integer per group (the first message is 1), epoch
a string that changes whenever the history is lost. Members of such a group
receive the message wrapped in an envelope that carries its position:

    {"group": "room:lobby", "offset": 42, "epoch": "5f0c2a9e1b7d", "data": ...}

and the ASGI message handed to members has the same `Position` under the key
`"position"`, for server code (a `Member`) to read.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from tether.frames import dumps, loads

__all__ = [
    "HistoryEntry",
    "HistoryPage",
    "Position",
    "Recovery",
    "RecoveryFailure",
]

_EPOCH = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_OFFSET = 2**53  # beyond it a JavaScript client cannot hold the number exactly

RecoveryFailure = Literal[
    "new", "no_history", "malformed", "epoch", "expired", "future", "overflow", "unavailable"
]
"""Why a join did not recover (`Recovery.reason`):

- `"new"`: no position was given (a first join);
- `"no_history"`: the group keeps no history;
- `"malformed"`: the position could not be parsed;
- `"epoch"`: the position is from another epoch: the history was lost since
  (a memory broker or a Redis without persistence restarted, the group's
  history expired) or the position belongs to another group;
- `"expired"`: messages after the position have already left the history
  (it is older than the history's `size` or `ttl`);
- `"future"`: the position is past the group's last message (the history was
  rewound, e.g. Redis restored an older snapshot);
- `"overflow"`: more messages were missed than the connection's outbound
  queue holds (`outbound_maxsize`), so they could not all be replayed;
- `"unavailable"`: the history could not be read (Redis is down).
"""


class Position(NamedTuple):
    """Where a message sits in its group's history: `epoch` and `offset`.

    `str(position)` is `"<epoch>:<offset>"`, the form a client sends back to
    recover (`Position.parse` reads it). Offsets start at 1; `offset=0` is the
    position before a group's first message. A named tuple: cheap to make
    once per published message, immutable, hashable.
    """

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Read `"<epoch>:<offset>"`; raises `ValueError` naming what is wrong."""
        if not isinstance(text, str):
            raise ValueError(
                f"a position is a string '<epoch>:<offset>', got {type(text).__name__}"
            )
        epoch, sep, offset = text.rpartition(":")
        if not sep or not _EPOCH.fullmatch(epoch):
            raise ValueError(f"malformed position {text[:80]!r}: expected '<epoch>:<offset>'")
        if not offset.isdigit() or not offset.isascii() or int(offset) > _MAX_OFFSET:
            raise ValueError(f"malformed position {text[:80]!r}: the offset must be a number")
        return cls(epoch, int(offset))


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `join(group, since=...)` answers.

    `recovered` is True only when a position was given and every message
    published after it has been delivered (in order, before any live one):
    the client then has everything. Otherwise the app should send the client
    the state afresh; `reason` says why (see `RecoveryFailure`) and nothing
    was replayed. `position` is the group's position when the member went
    live (its last message before the live ones; `None` for a group without
    history, or when the history was unavailable): give it to a client that
    has no position yet, so it can recover after its first reconnect.
    `replayed` counts the messages delivered from history.
    """

    recovered: bool
    position: Position | None
    replayed: int = 0
    reason: RecoveryFailure | None = None


NOT_KEPT = Recovery(False, None, reason="no_history")
"""The answer for a group that keeps no history."""


class HistoryEntry(NamedTuple):
    """One message in a group's history: its position and the frame members got."""

    position: Position
    frame: dict[str, Any]
    """The ASGI `websocket.send` message (the envelope) as delivered to members."""

    @property
    def data(self) -> Any:
        """The published message: str, JSON value, or bytes (decoded from the envelope)."""
        text = self.frame.get("text")
        envelope = loads(text if text is not None else self.frame["bytes"])
        if "bytes" in envelope:
            return base64.b64decode(envelope["bytes"])
        return envelope["data"]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """What `broker.history(group, since=..., limit=...)` reads, oldest first.

    `position` is the group's latest position (`None` when it keeps no
    history, or nothing could be read). `complete` is True when `entries`
    start right after `since` (nothing in between has left the history, and
    `since` is of the current epoch); with `since=None` it is True. `limit`
    may still cut the page short: read on from the last entry's position.
    """

    entries: list[HistoryEntry]
    position: Position | None
    complete: bool


def encode_data(message: Any) -> str | bytes:
    """A message as history keeps it, encoded once: JSON text, or the raw bytes."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    return dumps(message)


def group_json(group: str) -> str:
    """The group's name as a JSON string, for the envelope (worth caching per group)."""
    return dumps(group)


def envelope(group: str, position: Position, data: str | bytes) -> dict[str, Any]:
    """The ASGI message members of a history group receive: the message and its position.

    `group` is already JSON (see `group_json`); `data` is what `encode_data`
    made. JSON goes in `"data"`; bytes, base64-encoded, in `"bytes"`.
    """
    epoch, offset = position
    if type(data) is str:
        text = f'{{"group":{group},"offset":{offset},"epoch":"{epoch}","data":{data}}}'
    else:
        body = base64.b64encode(data).decode()
        text = f'{{"group":{group},"offset":{offset},"epoch":"{epoch}","bytes":"{body}"}}'
    return {"type": "websocket.send", "text": text, "position": position}


def recovery_of(
    since: Position, epoch: str, top: int, first: int | None
) -> tuple[bool, RecoveryFailure | None]:
    """Whether everything after `since` is still in a history of `epoch` ending at `top`.

    `first` is the offset of the first kept entry after `since` (None: none kept).
    """
    if since.epoch != epoch:
        return False, "epoch"
    if since.offset > top:
        return False, "future"
    if since.offset == top:
        return True, None
    if first != since.offset + 1:
        return False, "expired"
    return True, None


def room_for(member: object) -> int | None:
    """How many messages `member` can take at once (an `OutboundQueue`'s free room), if known."""
    maxsize = getattr(member, "maxsize", None)
    if type(maxsize) is not int:
        return None
    try:
        return maxsize - len(member)  # type: ignore[arg-type]
    except TypeError:
        return maxsize


def check_limit(limit: int | None) -> None:
    """Refuse a history `limit` that is not a positive int."""
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ValueError(f"history limit must be a positive int or None, got {limit!r}")
