"""Presence on a Redis Cluster, for `RedisClusterBroker`: every key of a group in its slot.

`RedisBroker`'s presence sweeps dead processes with one script that reaches
the keys of every group they were in; a cluster keeps those on different
shards. Here every script touches the keys of one group only, all carrying
the group's hash tag (`tether.brokers.shard_names`), so each runs on the shard
that owns the group. Keys of group `g` (tag `{g}`, prefix `tether:`):

- `tether:presence:{g}`, a hash: connection id -> entry (see `tether.brokers.presence`);
- `tether:presence-keys:{g}`, a hash: key (as JSON) -> how many connections
  have it, so `presence_count` is one `HLEN`;
- `tether:presence-procs:{g}`, a sorted set: process -> its deadline in this
  group (ms, Redis's clock);
- `tether:presence-proc:{g}:<process>`, a set of the connection ids that
  process made present in `g`, so its entries are found without a scan.

Each process refreshes its deadline in every group it has members in, and
sweeps every group it has members in or watches, every `presence_heartbeat /
2` seconds: one script per group, pipelined, one round trip per node. A
sweep (run by the heartbeat, and first thing by every join and every read)
removes the entries of processes whose deadline passed and publishes one
leave diff (`SPUBLISH` on the group's channel); a script runs atomically, so
one process announces each leave. A process gets `1.5 * presence_heartbeat`
to live, as on one Redis. The heartbeat reads back how many connection ids
Redis holds for this process in the group: fewer than it knows of (swept
while paused, a master restarted empty) and it registers them again.

Every key also expires on its own, three heartbeats after the last refresh
of any process present in the group, so a group whose processes all died
leaves nothing behind even when no one is left to sweep it.

The pub/sub payload of a change is `RedisBroker`'s (`tether.brokers.redis_presence`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import anyio
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from tether.brokers.presence import decode_entries
from tether.brokers.redis_presence import REDIS_DOWN, SWEEP_LIMIT, RedisPresence, change_frame
from tether.brokers.shard_names import tagged_name

__all__ = ["ClusterPresence", "ClusterPresenceKeys"]

logger = logging.getLogger("tether")

# Shared by every script. KEYS[1..3]: entries, counts, processes (one group's).
# `sweep` removes the entries of processes whose deadline passed and publishes
# their leaves in one diff; `keep` pushes the group's expiry out to `ms` from now, at least.
_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function sweep(now, sets, channel, limit)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)
  if #dead == 0 then return 0 end
  local left = {}
  for _, proc in ipairs(dead) do
    local set = sets .. proc
    local ids
    if redis.call('EXISTS', set) == 1 then
      ids = redis.call('SMEMBERS', set)
    else
      -- Its set expired before anyone swept it (every process stalled): its
      -- connection ids start with its name.
      ids = {}
      local mark = proc .. ':'
      for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
        if string.sub(id, 1, #mark) == mark then table.insert(ids, id) end
      end
    end
    for _, id in ipairs(ids) do
      local entry = redis.call('HGET', KEYS[1], id)
      if entry then
        redis.call('HDEL', KEYS[1], id)
        local key = string.sub(entry, 1, string.find(entry, '\\t', 1, true) - 1)
        if redis.call('HINCRBY', KEYS[2], key, -1) <= 0 then redis.call('HDEL', KEYS[2], key) end
        table.insert(left, entry)
      end
    end
    redis.call('DEL', set)
    redis.call('ZREM', KEYS[3], proc)
  end
  if #left > 0 then
    redis.call('SPUBLISH', channel, 'tether3 - l\\n' .. table.concat(left, '\\n'))
  end
  return #dead
end
local function keep(ms)
  for i = 1, 3 do
    -- GT: never shortened by a process with a shorter heartbeat; NX: a key
    -- just made (no expiry yet, which GT counts as infinite).
    if redis.call('PEXPIRE', KEYS[i], ms, 'GT') == 0 then
      redis.call('PEXPIRE', KEYS[i], ms, 'NX')
    end
  end
end
"""

# KEYS: entries, counts, processes, own set. ARGV: connection id, key json,
# entry, origin, ttl ms, keep ms, channel, payload head, set prefix, sweep limit.
TRACK_SCRIPT = (
    _COMMON
    + """
local now = now_ms()
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
sweep(now, ARGV[9], ARGV[7], tonumber(ARGV[10]))
local added = 0
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('SPUBLISH', ARGV[7], ARGV[8] .. ARGV[3])
  added = 1
end
keep(tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[6]))
return added
"""
)

# KEYS: entries, counts, processes, own set. ARGV: connection id, origin,
# channel, payload head.
UNTRACK_SCRIPT = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local key = string.sub(entry, 1, string.find(entry, '\\t', 1, true) - 1)
if redis.call('HINCRBY', KEYS[2], key, -1) <= 0 then redis.call('HDEL', KEYS[2], key) end
redis.call('SREM', KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('ZREM', KEYS[3], ARGV[2]) end
redis.call('SPUBLISH', ARGV[3], ARGV[4] .. entry)
return 1
"""

# KEYS: entries, counts, processes, own set. ARGV: origin, ttl ms, keep ms,
# how many entries this process holds in the group, set prefix, channel,
# sweep limit. Returns {connection ids Redis holds for this process, swept}.
TICK_SCRIPT = (
    _COMMON
    + """
local now = now_ms()
if ARGV[4] ~= '0' then
  -- Refreshed before sweeping: a process late by less than its ttl saves itself.
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
  keep(tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[3]))
end
local swept = sweep(now, ARGV[5], ARGV[6], tonumber(ARGV[7]))
return {redis.call('SCARD', KEYS[4]), swept}
"""
)

# KEYS: entries, counts, processes. ARGV: set prefix, channel, sweep limit,
# "count" or "members". A read sweeps first: it never shows the dead.
READ_SCRIPT = (
    _COMMON
    + """
sweep(now_ms(), ARGV[1], ARGV[2], tonumber(ARGV[3]))
if ARGV[4] == 'count' then return redis.call('HLEN', KEYS[2]) end
return redis.call('HVALS', KEYS[1])
"""
)


class ClusterPresenceKeys:
    """The Redis names of one group's presence on a cluster, all in the group's slot."""

    __slots__ = ("channel", "counts", "entries", "own", "processes", "sets")

    def __init__(self, prefix: bytes, group: str, origin: bytes) -> None:
        tagged = tagged_name(group)
        self.entries = prefix + b"presence:" + tagged
        self.counts = prefix + b"presence-keys:" + tagged
        self.processes = prefix + b"presence-procs:" + tagged
        self.sets = prefix + b"presence-proc:" + tagged + b":"  # + a process's name
        self.own = self.sets + origin
        self.channel = prefix + tagged

    @property
    def all(self) -> list[bytes]:
        """The four keys the change scripts take, in their order."""
        return [self.entries, self.counts, self.processes, self.own]


class ClusterPresence(RedisPresence):
    """`RedisClusterBroker`'s presence: `RedisPresence` with per-group scripts and heartbeat.

    The local bookkeeping (entries, watchers, leaves Redis missed) and the
    pub/sub payloads are `RedisPresence`'s. The heartbeat loop runs in the
    broker's task group (`beat_forever`), idle until this process has
    presence to keep.
    """

    _broker_name = "RedisClusterBroker"
    _sources = {
        "track": TRACK_SCRIPT,
        "untrack": UNTRACK_SCRIPT,
        "tick": TICK_SCRIPT,
        "read": READ_SCRIPT,
    }

    def __init__(self, prefix: bytes, origin: bytes, heartbeat: float, timeout: float) -> None:
        super().__init__(prefix, origin, heartbeat, timeout)
        self.prefix = prefix
        self.keep_ms = 2 * self.ttl_ms

    def unbind(self) -> None:
        """Forget the cluster client (the broker's connection state was reset)."""
        super().unbind()
        self.cluster: RedisCluster | None = None
        self._wanted = asyncio.Event()  # set: there is presence to keep, start beating
        self._beating: anyio.CancelScope | None = None
        self._beat_done = asyncio.Event()

    def bind(self, client: Any) -> None:
        """Use `client` (a `RedisCluster`) for presence; beat again if there are entries."""
        self.cluster = client
        super().bind(client)

    def ensure_running(self) -> None:
        """Wake the heartbeat loop (it runs in the broker's task group)."""
        self._wanted.set()

    def names(self, group: str) -> ClusterPresenceKeys:
        """The key names of `group`'s presence."""
        return ClusterPresenceKeys(self.prefix, group, self.origin)

    async def stop(self) -> None:
        """Stop the heartbeat, then take this process's members out of Redis.

        The heartbeat is waited for first, so it cannot register again what
        this takes out.
        """
        if self._beating is not None:
            self._beating.cancel()
            with anyio.move_on_after(self.timeout):
                await self._beat_done.wait()
        await super().stop()

    # -- changes ----------------------------------------------------------------

    async def _run_track(
        self, group: str, record: tuple[str, str, str], kind: bytes = b"j"
    ) -> bool:
        """Add `record` in Redis; False when Redis had it already (nothing was published)."""
        cid, key_json, entry = record
        names = self.names(group)
        return await self._call(
            "track",
            names.all,
            args=[
                cid,
                key_json,
                entry,
                self.origin,
                self.ttl_ms,
                self.keep_ms,
                names.channel,
                self._head[kind],
                names.sets,
                SWEEP_LIMIT,
            ],
        )

    async def _call(self, name: str, keys: list[bytes], args: list[Any]) -> Any:
        """Run script `name` on the node that owns `keys`, loading it there if it must.

        Loaded on that node only: redis-py's own fallback loads a script on
        every master, which fails while any one of them is down.
        """
        cluster, script = self.cluster, self._scripts[name]
        assert cluster is not None
        try:
            return await cluster.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            node = cluster.nodes_manager.get_node_from_slot(key_slot(keys[0]))
            await cluster.execute_command("SCRIPT LOAD", script.script, target_nodes=node)
            return await cluster.evalsha(script.sha, len(keys), *keys, *args)

    async def _run_untrack(self, group: str, record: tuple[str, str, str]) -> None:
        names = self.names(group)
        await self._call(
            "untrack", names.all, [record[0], self.origin, names.channel, self._head[b"l"]]
        )

    # -- reads ------------------------------------------------------------------

    async def swept(self) -> None:
        """Start the heartbeat: a watched group is swept by it (reads sweep by themselves)."""
        self.ensure_running()

    async def _read(self, group: str, what: bytes) -> Any:
        names = self.names(group)
        keys = [names.entries, names.counts, names.processes]
        return await self._call("read", keys, [names.sets, names.channel, SWEEP_LIMIT, what])

    async def members(self, group: str) -> dict[str, list[Any]]:
        """`{key: [payload, ...]}` for `group`: one script on its shard (sweep, `HVALS`)."""
        values = await self._read(group, b"members")
        return decode_entries(value.decode() for value in values)

    async def count(self, group: str) -> int:
        """How many distinct keys are present in `group`: one script (sweep, `HLEN`)."""
        return int(await self._read(group, b"count"))

    # -- the heartbeat ----------------------------------------------------------

    def beating_groups(self) -> Counter[str]:
        """The groups the heartbeat ticks: entries this process holds in each (0: watched only)."""
        held: Counter[str] = Counter(
            group for groups in self.entries.by_member.values() for group in groups
        )
        for group in self.watchers.groups():
            held.setdefault(group, 0)
        return held

    async def tick(self) -> int:
        """One heartbeat: per group, refresh and sweep; one pipelined round trip per node.

        Each node's groups go in a pipeline of their own, concurrently and
        bounded, so a node that is down holds up no other node's refresh (its
        failure is raised once the others are done). Returns how many dead processes
        were swept, summed over the groups.
        """
        failed = await self._retry_leaving()
        held = self.beating_groups()
        by_node: dict[str, list[str]] = {}
        for group in held:
            by_node.setdefault(self._node_of(group), []).append(group)
        swept = 0

        # A node that does not answer must not push the next refresh of the
        # others past their deadline: each node gets half a heartbeat at most.
        bound = min(self.timeout, self.heartbeat / 2)

        async def beat_node(groups: list[str]) -> None:
            nonlocal swept, failed
            try:
                with anyio.fail_after(bound):
                    swept += await self._tick_groups(groups, held)
            except (*REDIS_DOWN, TimeoutError) as exc:
                failed = exc

        async with anyio.create_task_group() as tg:
            for groups in by_node.values():
                tg.start_soon(beat_node, groups)
        if failed is not None:
            raise failed
        return swept

    async def _retry_leaving(self) -> BaseException | None:
        """Retry the leaves Redis missed, before any refresh; keep those that fail again."""
        failed = None
        for item in list(self.leaving):
            try:
                await self._run_untrack(*item)
            except REDIS_DOWN as exc:
                failed = exc
            else:
                self.leaving.remove(item)
        return failed

    def _node_of(self, group: str) -> str:
        assert self.cluster is not None
        try:
            slot = key_slot(self.names(group).entries)
            return self.cluster.nodes_manager.get_node_from_slot(slot).name
        except Exception:  # no owner in the slot map (yet): the pipeline finds one or fails
            return ""

    async def _tick_groups(self, groups: list[str], held: Counter[str]) -> int:
        """Tick `groups` (one node's) in one pipeline; register lost entries again."""
        assert self.cluster is not None
        sha = self._scripts["tick"].sha
        pipe = self.cluster.pipeline()
        for group in groups:
            keys = self.names(group).all
            # As a command, not `evalsha`: redis-py before 8.2 refuses that in a cluster pipeline.
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *self._tick_args(group, held))
        replies = await pipe.execute(raise_on_error=False)
        swept = 0
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, NoScriptError):  # a node restarted empty: load it there
                keys = self.names(group).all
                reply = await self._call("tick", keys, self._tick_args(group, held))
            elif isinstance(reply, Exception):
                raise reply
            holds, gone = int(reply[0]), int(reply[1])
            swept += gone
            if holds < held[group]:
                await self._register_again(group)
        return swept

    def _tick_args(self, group: str, held: Counter[str]) -> list[Any]:
        names = self.names(group)
        return [
            self.origin,
            self.ttl_ms,
            self.keep_ms,
            held[group],
            names.sets,
            names.channel,
            SWEEP_LIMIT,
        ]

    async def _register_again(self, group: str) -> None:
        """Redis lost some of this process's entries in `group`: add them back (kind `r`)."""
        records = [groups[group] for groups in self.entries.by_member.values() if group in groups]
        logger.warning(
            "RedisClusterBroker: this process's presence in %r was gone from Redis (paused "
            "too long, or a node restarted); registering its %d entries again",
            group,
            len(records),
        )
        for record in records:
            # Skipped if left meanwhile; told only where Redis had really lost it.
            if self.entries.holds(group, record) and await self._run_track(group, record, b"r"):
                self.watchers.deliver(group, change_frame(group, b"r", [record[2]]), None)

    async def beat_forever(self) -> None:
        """The heartbeat loop, run in the broker's task group until `stop()`."""
        done = self._beat_done
        try:
            with anyio.CancelScope() as scope:
                self._beating = scope
                await self._wanted.wait()
                await self._beat_forever()
        finally:
            done.set()
