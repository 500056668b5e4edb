"""Presence in Redis, for `RedisBroker`: the scripts, the heartbeat, and this process's entries.

Keys (with the broker's `channel_prefix`, `tether:` by default):

- `presence:<group>`, a hash: connection id -> entry (see `tether.brokers.presence`);
- `presence-keys:<group>`, a hash: key (as JSON) -> how many connections have it,
  so `presence_count` is one `HLEN`;
- `presence-proc:<process>`, a set of `"<connection id> <group>"`: what a process
  has made present, so a dead process's entries can be found without scanning;
- `presence-procs`, a sorted set: process -> when it expires (ms, Redis's clock).

Every change is one script, so the three stay in step, and the last leave of a
group deletes its keys (Redis drops an empty hash or set). Each process
refreshes its expiry every `presence_heartbeat / 2` seconds and, in the same
script, sweeps processes whose expiry has passed: their entries are removed
and one leave diff per group is published, by whichever process runs the sweep
first (a script runs atomically, so no other finds them again). A process is
given `1.5 * presence_heartbeat` to live, so a killed one is gone within two
heartbeats, and a live one may be late by a whole heartbeat before it is
mistaken for dead. A process that finds its own set gone (swept while paused,
or a Redis that restarted) registers its entries again. `stop()` removes this
process's entries from Redis (a restart registers them again), and a removal
that Redis missed is retried by the next heartbeat, before its refresh.

Pub/sub payload of a presence change, on the group's own channel:
    b"tether3 " + origin (the process's 16 hex digits, or "-" for a sweep) + b" " + kind
    + b"\\n" + entries separated by b"\\n"
where kind is b"j" (joined), b"l" (left) or b"r" (registered again: watchers
are sent it as a leave and a join of the same entries).

The tick script names keys it computes (a dead process's groups, wherever
they are), so this layout needs one Redis; on a cluster, `RedisClusterBroker`
keeps a deadline per process in each group instead
(`tether.brokers.redis_cluster_presence`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tether.brokers.cancelling import cancel_and_wait
from tether.brokers.groups import GroupTable
from tether.brokers.presence import decode_entries, diff_frame, split_entry

logger = logging.getLogger("tether")

REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)
PRESENCE_MAGIC = b"tether3 "

# KEYS: entries, counts, process set, processes. ARGV: connection id, key json,
# entry, group, origin, ttl ms, channel, pub/sub payload head.
TRACK_SCRIPT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ARGV[5])
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('SADD', KEYS[3], ARGV[1] .. ' ' .. ARGV[4])
  redis.call('PUBLISH', ARGV[7], ARGV[8] .. ARGV[3])
  return 1
end
return 0
"""

# KEYS: entries, counts, process set, processes. ARGV: connection id, group,
# origin, channel, pub/sub payload head.
UNTRACK_SCRIPT = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local key = string.sub(entry, 1, string.find(entry, '\\t', 1, true) - 1)
if redis.call('HINCRBY', KEYS[2], key, -1) <= 0 then redis.call('HDEL', KEYS[2], key) end
redis.call('SREM', KEYS[3], ARGV[1] .. ' ' .. ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('ZREM', KEYS[4], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. entry)
return 1
"""

# KEYS: processes, own process set. ARGV: origin, ttl ms, key prefix,
# "1" when this process has entries, most processes to sweep.
# Returns {1 if this process's set is where it should be (or it has none), swept}.
TICK_SCRIPT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local alive = 1
if ARGV[4] == '1' then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  else
    alive = 0
  end
end
local prefix = ARGV[3]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for _, proc in ipairs(dead) do
  local set = prefix .. 'presence-proc:' .. proc
  local left = {}
  for _, item in ipairs(redis.call('SMEMBERS', set)) do
    local space = string.find(item, ' ', 1, true)
    local id, group = string.sub(item, 1, space - 1), string.sub(item, space + 1)
    local entries = prefix .. 'presence:' .. group
    local entry = redis.call('HGET', entries, id)
    if entry then
      redis.call('HDEL', entries, id)
      local counts = prefix .. 'presence-keys:' .. group
      local key = string.sub(entry, 1, string.find(entry, '\\t', 1, true) - 1)
      if redis.call('HINCRBY', counts, key, -1) <= 0 then redis.call('HDEL', counts, key) end
      if not left[group] then left[group] = {} end
      table.insert(left[group], entry)
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], proc)
  for group, gone in pairs(left) do
    redis.call('PUBLISH', prefix .. group, 'tether3 - l\\n' .. table.concat(gone, '\\n'))
  end
end
return {alive, #dead}
"""

SWEEP_LIMIT = 100  # dead processes swept per tick, at most: a script must stay short


class PresenceKeys:
    """The Redis key names of presence, for one broker's prefix."""

    __slots__ = ("prefix", "processes")

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.processes = prefix + b"presence-procs"

    def entries(self, group: str) -> bytes:
        """The hash of `group`'s entries."""
        return self.prefix + b"presence:" + group.encode()

    def counts(self, group: str) -> bytes:
        """The hash of `group`'s per-key connection counts."""
        return self.prefix + b"presence-keys:" + group.encode()

    def process(self, origin: bytes) -> bytes:
        """The set of what process `origin` made present."""
        return self.prefix + b"presence-proc:" + origin


def parse_change(data: bytes) -> tuple[bytes, bytes, list[str]]:
    """A presence pub/sub payload's `(origin, kind, entries)`; kind is b"j", b"l" or b"r"."""
    header, _, body = data.partition(b"\n")
    _, origin, kind = header.split(b" ")
    return origin, kind, body.decode().split("\n")


def change_frame(group: str, kind: bytes, entries: list[str]) -> dict[str, Any]:
    """The diff watchers are sent for a presence change of `kind`.

    A registration again (`b"r"`) is both a leave and a join of the same
    entries: a client applies leaves first, so whether or not it had heard
    them leave (a sweep, or a Redis that lost them silently), it ends with
    each entry once.
    """
    if kind == b"j":
        return diff_frame(group, entries, [])
    if kind == b"l":
        return diff_frame(group, [], entries)
    return diff_frame(group, entries, entries)


class LocalEntries:
    """What this process has made present: to leave, and to register again."""

    __slots__ = ("by_member", "next_id")

    def __init__(self) -> None:
        # id(member) -> {group: (connection id, key json, entry)}
        self.by_member: dict[int, dict[str, tuple[str, str, str]]] = {}
        self.next_id = 0

    def __bool__(self) -> bool:
        return bool(self.by_member)

    def all(self) -> list[tuple[str, tuple[str, str, str]]]:
        """Every `(group, record)` this process holds."""
        return [(g, r) for groups in self.by_member.values() for g, r in groups.items()]

    def add(self, member: Any, group: str, record: tuple[str, str, str]) -> None:
        """Remember that `member` is present in `group`."""
        self.by_member.setdefault(id(member), {})[group] = record

    def holds(self, group: str, record: tuple[str, str, str]) -> bool:
        """Whether `record` is still one of this process's presences in `group`."""
        return any(groups.get(group) is record for groups in self.by_member.values())

    def pop(self, member: Any, group: str) -> tuple[str, str, str] | None:
        """Forget `member`'s presence in `group`, returning what it was."""
        groups = self.by_member.get(id(member))
        if groups is None:
            return None
        record = groups.pop(group, None)
        if not groups:
            del self.by_member[id(member)]
        return record

    def pop_all(self, member: Any) -> dict[str, tuple[str, str, str]]:
        """Forget all of `member`'s presence."""
        return self.by_member.pop(id(member), {})

    def counts(self) -> dict[str, tuple[int, int]]:
        """`{group: (distinct keys, connections)}` of this process's presence, without Redis."""
        keys: dict[str, set[str]] = {}
        connections: dict[str, int] = {}
        # Read from a scrape thread while the broker's loop changes them: each list() copies
        # a dict in one C call, so no iteration sees a dict change size under it.
        for groups in list(self.by_member.values()):
            for group, record in list(groups.items()):
                keys.setdefault(group, set()).add(record[1])
                connections[group] = connections.get(group, 0) + 1
        return {group: (len(keys[group]), count) for group, count in connections.items()}


class RedisPresence:
    """`RedisBroker`'s presence: its scripts, its heartbeat task, its local entries and watchers.

    Runs on the broker's event loop. The heartbeat task is started on first
    use and owned by the broker, which cancels and awaits it in `stop()`.
    """

    _broker_name = "RedisBroker"  # in the heartbeat's log lines
    _sources: dict[str, str] = {
        "track": TRACK_SCRIPT,
        "untrack": UNTRACK_SCRIPT,
        "tick": TICK_SCRIPT,
    }

    def __init__(self, prefix: bytes, origin: bytes, heartbeat: float, timeout: float) -> None:
        if not heartbeat > 0:
            raise ValueError(
                f"presence_heartbeat must be a positive number of seconds, not {heartbeat!r}"
            )
        self.keys = PresenceKeys(prefix)
        self.origin = origin
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.ttl_ms = round(heartbeat * 1.5e3)
        self.entries = LocalEntries()
        self.leaving: list[tuple[str, tuple[str, str, str]]] = []  # untracks Redis missed
        self.watchers = GroupTable()
        kinds = (b"j", b"l", b"r")
        self._head = {kind: PRESENCE_MAGIC + origin + b" " + kind + b"\n" for kind in kinds}
        self.unbind()

    def unbind(self) -> None:
        """Forget the Redis client and the task (the broker's connection state was reset)."""
        self.client: Redis | None = None
        self.task: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}

    def bind(self, client: Redis) -> None:
        """Use `client` for presence; restart the heartbeat if this process has entries."""
        self.client = client
        self._scripts = {name: client.register_script(text) for name, text in self._sources.items()}
        if self.entries:
            self.ensure_running()

    def ensure_running(self) -> None:
        """Start the heartbeat task (on the running loop, the broker's) if it is not running."""
        if self.task is None and self.client is not None:
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._beat_forever(), name="tether-redis-presence")

    async def stop(self) -> None:
        """Cancel the heartbeat task, and take this process's members out of Redis.

        The others hear them leave now rather than after two heartbeats. They
        stay present locally: a broker that starts again registers them again.
        """
        task, self.task = self.task, None
        if task is not None:
            await cancel_and_wait([task])
        if self.client is None or not (self.entries or self.leaving):
            return
        try:
            with anyio.move_on_after(self.timeout):
                while self.leaving:
                    await self._run_untrack(*self.leaving[-1])
                    self.leaving.pop()
                for group, record in self.entries.all():
                    await self._run_untrack(group, record)
        except REDIS_DOWN as exc:  # the sweep has the last word
            logger.debug("RedisBroker: presence left in Redis at stop: %s", exc)

    # -- changes ----------------------------------------------------------------

    async def track(self, group: str, member: Any, entry: str) -> None:
        """Make `member` present in `group` in Redis; tell local watchers at once."""
        self.ensure_running()
        groups = self.entries.by_member.get(id(member))
        old = None if groups is None else groups.get(group)
        if old is not None:
            if old[2] == entry:
                return
            await self.untrack(group, member, quiet=False)
        self.entries.next_id += 1
        record = (f"{self.origin.decode()}:{self.entries.next_id}", split_entry(entry)[0], entry)
        await self._run_track(group, record)
        self.entries.add(member, group, record)
        self.watchers.deliver(group, diff_frame(group, [entry], []), None)

    async def _run_track(
        self, group: str, record: tuple[str, str, str], kind: bytes = b"j"
    ) -> None:
        cid, key_json, entry = record
        keys = self.keys
        await self._scripts["track"](
            keys=[
                keys.entries(group),
                keys.counts(group),
                keys.process(self.origin),
                keys.processes,
            ],
            args=[
                cid,
                key_json,
                entry,
                group,
                self.origin,
                self.ttl_ms,
                keys.prefix + group.encode(),
                self._head[kind],
            ],
        )

    async def untrack(self, group: str, member: Any, *, quiet: bool = True) -> None:
        """Remove `member` from `group`'s presence; bounded, raises only when not `quiet`."""
        record = self.entries.pop(member, group)
        if record is None:
            return
        self.watchers.deliver(group, diff_frame(group, [], [record[2]]), None)
        try:
            with anyio.fail_after(self.timeout):
                await self._run_untrack(group, record)
        except (*REDIS_DOWN, TimeoutError) as exc:
            # Still in Redis, and this process's heartbeat would keep it there:
            # the heartbeat removes it first thing once Redis answers again.
            self.leaving.append((group, record))
            if not quiet:
                raise
            logger.warning("RedisBroker cannot remove a presence in %r yet: %s", group, exc)

    async def _run_untrack(self, group: str, record: tuple[str, str, str]) -> None:
        keys = self.keys
        process = keys.process(self.origin)
        await self._scripts["untrack"](
            keys=[keys.entries(group), keys.counts(group), process, keys.processes],
            args=[record[0], group, self.origin, keys.prefix + group.encode(), self._head[b"l"]],
        )

    async def untrack_all(self, member: Any) -> None:
        """Remove `member` from every group's presence and stop its diffs; never raises."""
        self.watchers.discard_all(member)
        for group in list(self.entries.by_member.get(id(member), ())):
            await self.untrack(group, member)

    # -- reads ------------------------------------------------------------------

    async def swept(self) -> None:
        """Start the heartbeat if it is not running, first sweeping what died meanwhile."""
        if self.task is None:
            try:
                await self.tick()  # a process's first read must not show the dead
            except REDIS_DOWN as exc:
                logger.debug("RedisBroker: presence sweep failed: %s", exc)
            self.ensure_running()

    async def members(self, group: str) -> dict[str, list[Any]]:
        """`{key: [payload, ...]}` for `group`, from Redis."""
        await self.swept()
        assert self.client is not None
        values = await self.client.hvals(self.keys.entries(group))
        return decode_entries(value.decode() for value in values)

    async def count(self, group: str) -> int:
        """How many distinct keys are present in `group` (one `HLEN`)."""
        await self.swept()
        assert self.client is not None
        return int(await self.client.hlen(self.keys.counts(group)))

    def deliver_change(self, group: str, data: bytes) -> None:
        """Hand a presence change from pub/sub to this process's watchers (not our own)."""
        origin, kind, entries = parse_change(data)
        if origin == self.origin or group not in self.watchers:
            return
        self.watchers.deliver(group, change_frame(group, kind, entries), None)

    # -- the heartbeat ----------------------------------------------------------

    async def tick(self) -> int:
        """Refresh this process's expiry and sweep dead processes; return how many were swept."""
        while self.leaving:
            await self._run_untrack(*self.leaving[0])
            self.leaving.pop(0)
        keys = self.keys
        alive, swept = await self._scripts["tick"](
            keys=[keys.processes, keys.process(self.origin)],
            args=[
                self.origin,
                self.ttl_ms,
                keys.prefix,
                b"1" if self.entries else b"0",
                SWEEP_LIMIT,
            ],
        )
        if not alive:
            held = self.entries.all()
            logger.warning(
                "RedisBroker: this process's presence was gone from Redis (paused too long, "
                "or Redis restarted); registering its %d entries again",
                len(held),
            )
            for group, record in held:
                if self.entries.holds(group, record):  # not left while we were re-adding
                    await self._run_track(group, record, b"r")
                    self.watchers.deliver(group, change_frame(group, b"r", [record[2]]), None)
        return int(swept)

    async def _beat_forever(self) -> None:
        """Tick every half heartbeat until cancelled; a run of failures is logged once."""
        failing = False
        while True:
            try:
                with anyio.fail_after(self.timeout):
                    await self.tick()
            except (*REDIS_DOWN, TimeoutError) as exc:
                if not failing:
                    logger.warning("%s presence heartbeat failed: %s", self._broker_name, exc)
                failing = True
            except Exception:
                # Anything else is a bug; the next beat tries again rather than none ever does.
                logger.exception("%s presence heartbeat failed", self._broker_name)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.heartbeat / 2)
