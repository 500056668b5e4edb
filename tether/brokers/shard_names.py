"""Where a group lives on a Redis Cluster: the hash tag that puts all its names in one slot.

Redis Cluster hashes only the part of a name between the first `{` and the
first `}` after it (the hash tag), when that part is not empty. Every name
`RedisClusterBroker` keeps for a group (its shard channel, its history
stream and meta hash) embeds the group's *tagged name*, so they all hash to
one slot and a group's traffic stays on the shard that owns it:

- a group without braces is tagged as itself: group `room:1` becomes
  `{room:1}`, so its channel is `tether:{room:1}` (what `redis-cli SPUBLISH`
  needs to reach it);
- a group that is empty or contains `{` or `}` would move the tag, so it is
  tagged with a digest of its name instead, then the name:
  `room{1}` becomes `{<16 hex digits>}:room{1}`.

The channel prefix must not contain braces (checked by the broker).
"""

from __future__ import annotations

import hashlib

__all__ = ["group_of_tagged", "tagged_name"]


def tagged_name(group: str) -> bytes:
    """The part of every Redis name kept for `group` that decides its slot, with the name."""
    raw = group.encode()
    if raw and b"{" not in raw and b"}" not in raw:
        return b"{" + raw + b"}"
    digest = hashlib.blake2b(raw, digest_size=8).hexdigest().encode()
    return b"{" + digest + b"}:" + raw


def group_of_tagged(tagged: bytes) -> bytes:
    """The group name (UTF-8) back from `tagged_name`'s result."""
    tag, _, rest = tagged[1:].partition(b"}")
    return rest[1:] if rest else tag
