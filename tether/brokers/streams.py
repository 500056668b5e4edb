"""Group history in Redis Streams, for `RedisBroker`: the scripts and each group's local state.

Each group with history has two keys: a hash `<prefix>epoch:<group>` holding
its `epoch` and `top` (the last offset given out), and a stream
`<prefix>history:<group>` whose entry IDs are `0-<offset>`, trimmed with
`XADD ... MAXLEN ~ size`. Both expire `ttl` after the group's last publish.
A publish is one script (one round trip): it takes the next offset, appends
to the stream, refreshes the TTLs and PUBLISHes the message with its
position, all atomically, so the order of pub/sub messages is the order of
offsets. When the hash is missing (first use, expiry, or a Redis that
restarted without persistence) the script starts a new epoch and an empty
stream: old positions then answer `recovered=False`.

A script rather than a MULTI pipeline of XADD and PUBLISH: only a script can
use the offset it just took as the entry's ID and in the payload (XADD's own
IDs are timestamps, not consecutive offsets), and it was also the cheaper of
the two when measured. Pub/sub rather than the stream as the fan-out: a
process is then pushed only the groups it serves, one subscription each,
instead of re-issuing a blocking XREAD over all of them.

Pub/sub payload of a message with history:
    b"tether2 " + epoch + b" " + offset + b" " + stored value
Stored value (the stream entry's field `v`):
    origin (32 hex digits) + b" " + seq (b"-" or the publisher's number for
    `exclude`) + b" " + kind (b"t" JSON text | b"b" bytes) + b"\n" + body
"""

from __future__ import annotations

import asyncio
from typing import Any

from tether.brokers.positions import HistoryEntry, Position, envelope, group_json

KEPT_MAGIC = b"tether2 "

# KEYS: meta hash, stream. ARGV: channel, epoch if new, size, ttl ms, value.
PUBLISH_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. top, 'v', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], 'tether2 ' .. epoch .. ' ' .. top .. ' ' .. ARGV[5])
return {epoch, top}
"""

# The same on a Redis Cluster (`RedisClusterBroker`): the message goes out with
# SPUBLISH, on the shard that owns the group's slot, which also holds both keys.
SHARDED_PUBLISH_SCRIPT = PUBLISH_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")

# KEYS: meta hash, stream. ARGV: epoch if new, ttl ms, expected epoch ("" none),
# after (-2: no entries, -1: the newest `count`, else the entries after it), count (0: all).
# Entries after `after` are read only in the expected epoch; in another, from the start.
READ_SCRIPT = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {epoch, 0, {}}
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top'))
local after = tonumber(ARGV[4])
local count = tonumber(ARGV[5])
if after == -2 then
  return {epoch, top, {}}
end
if after == -1 then
  if count > 0 then
    return {epoch, top, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', count), 1}
  end
  after = 0
elseif epoch ~= ARGV[3] then
  after = 0
end
if after >= top then
  return {epoch, top, {}}
end
if count > 0 then
  return {epoch, top, redis.call('XRANGE', KEYS[2], '0-' .. (after + 1), '+', 'COUNT', count)}
end
return {epoch, top, redis.call('XRANGE', KEYS[2], '0-' .. (after + 1), '+')}
"""

NONE = -2
NEWEST = -1


class GroupStream:
    """What this process knows of one history group: the last position it delivered."""

    __slots__ = ("epoch", "lock", "name", "offset")

    def __init__(self, group: str) -> None:
        self.name = group_json(group)
        self.epoch: str | None = None  # None: not read yet
        self.offset = 0
        self.lock: asyncio.Lock | None = None  # one recovery at a time per group

    def entry(self, offset: int, value: bytes, epoch: str) -> tuple[HistoryEntry, bytes, bytes]:
        """A stored value as the entry members get; with its origin and seq (for `exclude`)."""
        header, _, body = value.partition(b"\n")
        origin, seq, kind = header.split(b" ")
        position = Position(epoch, offset)
        frame = envelope(self.name, position, body.decode() if kind == b"t" else body)
        return HistoryEntry(position, frame), origin, seq


def read_reply(reply: list[Any]) -> tuple[str, int, list[tuple[int, bytes]]]:
    """READ_SCRIPT's reply as (epoch, top, [(offset, stored value), ...]) oldest first."""
    epoch = reply[0].decode()
    top = int(reply[1])
    entries = [(int(entry_id.rpartition(b"-")[2]), fields[1]) for entry_id, fields in reply[2]]
    if len(reply) > 3:  # XREVRANGE: newest first
        entries.reverse()
    return epoch, top, entries
