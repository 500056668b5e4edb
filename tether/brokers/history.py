"""Which groups keep history (`GroupHistory`), and the in-process history a `MemoryBroker` keeps."""

from __future__ import annotations

import math
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from tether.brokers.positions import (
    HistoryEntry,
    HistoryPage,
    Position,
    envelope,
    group_json,
    recovery_of,
)

__all__ = ["GroupHistory", "HistoryPolicy"]

_new = tuple.__new__
_CACHE_LIMIT = 10_000  # group names remembered by HistoryPolicy.of before it starts over


@dataclass(frozen=True, slots=True)
class GroupHistory:
    """How much history a group keeps: at most `size` messages, for `ttl` seconds.

    The history lives `ttl` seconds after the group's last publish (as
    Centrifugo's `history_ttl`): a group nobody publishes to forgets it, and
    a recovery then answers `recovered=False`. `size` bounds it in messages
    (a `RedisBroker` trims approximately, so it may keep slightly more). The
    defaults: 1,024 messages (what a connection's outbound queue holds by
    default, so a whole history can be replayed), 300 seconds.
    """

    size: int = 1024  # as many as a connection's outbound queue holds by default
    ttl: float = 300.0

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"GroupHistory size must be a positive int, got {self.size!r}")
        if not isinstance(self.ttl, (int, float)) or isinstance(self.ttl, bool) or self.ttl <= 0:
            raise ValueError(
                f"GroupHistory ttl must be a positive number of seconds, got {self.ttl!r}"
            )


class HistoryPolicy:
    """A broker's `history=` setting: which groups keep history, and how much.

    Either one `GroupHistory` for every group, or a mapping from group names
    to `GroupHistory` (or `None`: no history). A key ending in `*` matches
    every group starting with what comes before it (`"room:*"`); an exact
    name wins over a pattern, a longer pattern over a shorter one.
    """

    __slots__ = ("_all", "_cache", "_exact", "_patterns", "shortest_ttl")

    def __init__(self, history: GroupHistory | Mapping[str, GroupHistory | None]) -> None:
        self._cache: dict[str, GroupHistory | None] = {}
        self._exact: dict[str, GroupHistory | None] = {}
        self._patterns: list[tuple[str, GroupHistory | None]] = []
        self._all: GroupHistory | None = None
        self.shortest_ttl = math.inf
        """The shortest `ttl` among the settings: how often expired histories are looked for."""
        if isinstance(history, GroupHistory):
            self._all = history
            self.shortest_ttl = history.ttl
            return
        if not isinstance(history, Mapping):
            raise TypeError(
                "history= takes a GroupHistory (every group) or a mapping of group names "
                f"or 'prefix*' patterns to GroupHistory, got {type(history).__name__}"
            )
        for key, value in history.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"history= keys are group names or 'prefix*' patterns, got {key!r}")
            if value is not None and not isinstance(value, GroupHistory):
                raise TypeError(
                    f"history[{key!r}] must be a GroupHistory or None, got {type(value).__name__}"
                )
            if value is not None:
                self.shortest_ttl = min(self.shortest_ttl, value.ttl)
            if key.endswith("*"):
                self._patterns.append((key[:-1], value))
            else:
                self._exact[key] = value
        self._patterns.sort(key=lambda pattern: len(pattern[0]), reverse=True)

    def of(self, group: str) -> GroupHistory | None:
        """The history `group` keeps, or None."""
        if self._all is not None:
            return self._all
        try:
            return self._cache[group]
        except KeyError:
            pass
        found = self._exact.get(group)
        if found is None and group not in self._exact:
            for prefix, value in self._patterns:
                if group.startswith(prefix):
                    found = value
                    break
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # bounded: group names may come from clients
        self._cache[group] = found
        return found


def new_epoch() -> str:
    """A fresh epoch: 12 random hex digits, so two histories never share one."""
    return secrets.token_hex(6)


class GroupLog:
    """One group's history in process: a bounded ring of frames and the group's position.

    The ring holds the frames members got (each with its `"position"`), so a
    publish makes nothing it does not deliver; entries are made when read.
    """

    __slots__ = ("_head", "_tail", "config", "epoch", "expires", "frames", "name", "top", "ttl")

    def __init__(self, group: str, config: GroupHistory, now: float) -> None:
        self.config = config
        self.ttl = config.ttl
        self.name = group_json(group)
        self.epoch = new_epoch()
        self.top = 0
        self.frames: deque[dict[str, Any]] = deque(maxlen=config.size)
        self.expires = now + config.ttl
        # The envelope's fixed parts, made once: a publish only adds the offset and data.
        self._head = f'{{"group":{self.name},"offset":'
        self._tail = f',"epoch":"{self.epoch}","data":'

    @property
    def position(self) -> Position:
        """The position of the group's last message (offset 0 before the first)."""
        return Position(self.epoch, self.top)

    def append(self, data: str | bytes, now: float) -> dict[str, Any]:
        """Give the message (made by `encode_data`) the next offset; keep its frame, return it."""
        self.top = top = self.top + 1
        # tuple.__new__ skips the named tuple's Python-level __new__: once per publish.
        position = _new(Position, (self.epoch, top))
        if type(data) is str:  # what `envelope` makes, from the parts made once
            text = f"{self._head}{top}{self._tail}{data}}}"
            frame = {"type": "websocket.send", "text": text, "position": position}
        else:
            frame = envelope(self.name, position, data)
        self.frames.append(frame)
        self.expires = now + self.ttl
        return frame

    def after(self, offset: int) -> list[dict[str, Any]]:
        """The kept frames with an offset above `offset`, oldest first."""
        frames = self.frames
        if not frames or offset >= self.top:
            return []
        start = max(0, offset + 1 - frames[0]["position"].offset)
        return list(islice(frames, start, None))

    def read(self, since: Position | None, limit: int | None) -> HistoryPage:
        """The entries after `since`; with `since=None`, the kept ones (the newest `limit`)."""
        if since is None:
            frames = list(self.frames)
            complete = True
        else:
            # Another epoch: what is kept is all there is to read, and it is not complete.
            frames = self.after(since.offset) if since.epoch == self.epoch else list(self.frames)
            first = frames[0]["position"].offset if frames else None
            complete, _ = recovery_of(since, self.epoch, self.top, first)
        if limit is not None:
            # The newest `limit` without a position ("the last 50"), else the next `limit`.
            frames = frames[-limit:] if since is None else frames[:limit]
        entries = [HistoryEntry(frame["position"], frame) for frame in frames]
        return HistoryPage(entries, self.position, complete)
