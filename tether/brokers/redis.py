"""`RedisBroker`: groups that span processes and machines, over Redis pub/sub."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar
from uuid import uuid4

import anyio
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from tether._running_loop import running_asyncio_loop
from tether.brokers.base import Broker, Member
from tether.brokers.cancelling import cancel_and_wait
from tether.brokers.groups import GroupTable
from tether.brokers.history import GroupHistory, HistoryPolicy, new_epoch
from tether.brokers.positions import (
    NOT_KEPT,
    HistoryEntry,
    HistoryPage,
    Position,
    Recovery,
    check_limit,
    encode_data,
    recovery_of,
    room_for,
)
from tether.brokers.presence import encode_entry
from tether.brokers.redis_presence import PRESENCE_MAGIC, RedisPresence
from tether.brokers.streams import (
    KEPT_MAGIC,
    NEWEST,
    NONE,
    PUBLISH_SCRIPT,
    READ_SCRIPT,
    GroupStream,
    read_reply,
)
from tether.frames import encode_frame

__all__ = ["RedisBroker"]

logger = logging.getLogger("tether")

T = TypeVar("T")

# Wire format of one published message:
#     b"tether1 " + origin (32 hex digits) + b" " + kind (b"t" text | b"b" bytes) + b"\n" + body
# The header lets a receiver skip its own messages without touching the body.
_MAGIC = b"tether1 "
_HEADER_SIZE = len(_MAGIC) + 32 + 3
_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)
_EXCLUDED_LIMIT = 10_000  # publishes with `exclude` whose echo may still come back
# PUBLISH <channel> <header + body>, RESP-encoded; filled in by `publish`.
_PUBLISH_COMMAND = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s%s %s\n%s\r\n"


class _Buffer:
    """Holds a recovering member's live messages until its replay is done."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def deliver(self, message: dict[str, Any]) -> None:
        self.frames.append(message)


class RedisBroker(Broker):
    """Fan-out across processes and machines through Redis pub/sub.

    ```python
    broker = RedisBroker("redis://localhost:6379/0")
    await broker.subscribe("room:1", queue)      # queue: an OutboundQueue
    await broker.publish("room:1", {"text": "hi"})
    ```

    How it works:

    - Each process holds one Redis subscription per group that has local
      members: SUBSCRIBE when the first local member joins, UNSUBSCRIBE when
      the last leaves. A node therefore only receives groups it serves.
      `subscribe` returns once Redis has acknowledged the SUBSCRIBE.
    - `publish` delivers to local members directly (no round trip), then
      PUBLISHes one pre-encoded payload. Each receiving process decodes it once
      and hands the same ASGI message to all its members. The payload carries
      the publishing process's id; a process skips its own messages, so local
      members get each message exactly once and `exclude` (a member of the
      publishing process) is honoured on every node.
    - Publishes are batched (group commit): one writer task per process sends
      every PUBLISH that is pending in one pipelined write and reads their
      replies in one go, while the next batch gathers. `publish` returns once
      Redis has acknowledged its own PUBLISH, so many concurrent publishers
      (connections, jobs) share round trips, and one publisher awaiting each
      publish in turn still pays one round trip per message.
    - Messages from one publisher to one group arrive in publish order.
    - A reader task receives pub/sub messages. It must outlive every
      connection, so the broker owns it: it is started by `start()` or lazily
      by the first call, on the event loop of that call, and is cancelled and
      awaited by `stop()`. Calls made from another event loop that is running
      in another thread are forwarded to that loop; when the loop the broker
      was bound to has been closed, the next call re-binds it to the caller's.
    - When Redis goes away, the reader reconnects with exponential backoff
      (`reconnect_delay` doubling up to `max_reconnect_delay`), re-subscribes
      to every group that has local members, and logs on logger `tether`.
      Meanwhile local delivery keeps working. Remote members miss what is
      published while this process is disconnected (pub/sub keeps no
      backlog), and `subscribe` returns without waiting for Redis.
    - Groups with history (`history=`, see `GroupHistory`) keep their
      messages in a Redis Stream (see `tether.brokers.streams`), so every
      process sees the same positions. Their messages reach local members
      through Redis too (so every member sees them in offset order), and a
      process that lost Redis catches up from the stream when it is back:
      its members miss nothing still kept. A publish to such a group while
      Redis is unreachable waits in an outbox (`outbox_size` messages, the
      oldest dropped beyond) and goes out, in order, when Redis is back.

    Needs asyncio (`redis.asyncio` is asyncio-only); under trio use
    `MemoryBroker`. Install with `pip install tether[redis]`, or
    `tether[hiredis]` for redis-py's C reply parser (faster reads).
    """

    _presence_type: type[RedisPresence] = RedisPresence  # RedisClusterBroker's keeps one slot

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        channel_prefix: str = "tether:",
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
        timeout: float = 5.0,
        health_check_interval: float | None = 5.0,
        history: GroupHistory | Mapping[str, GroupHistory | None] | None = None,
        outbox_size: int = 10_000,
        presence_heartbeat: float = 5.0,
        **connection_kwargs: Any,
    ) -> None:
        """Configure the broker; nothing connects until `start()` or first use.

        `channel_prefix` namespaces the Redis channels (group `g` is channel
        `tether:g`). `timeout` bounds connecting, each command, and the wait
        for a subscription to be confirmed. Extra keyword arguments go to
        `redis.asyncio.ConnectionPool.from_url` (e.g. `password`, `ssl_*`).
        `history` says which groups keep history (see `HistoryPolicy`).
        `health_check_interval`: every that many seconds the subscriber
        connection is sent a PING; no PONG within `timeout` means the
        connection is dead though TCP has not noticed (a half-open link, a
        frozen server), and the reader reconnects. So a silent connection is
        noticed within `health_check_interval + timeout` (10 s by default);
        `None` turns the check off (TCP keepalive alone then).
        `presence_heartbeat` is how often, in seconds, this process tells
        Redis it is alive while it has present members: a process that stops
        (even by SIGKILL) loses its members, with a leave diff, within two.
        """
        self.url = url
        self.channel_prefix = channel_prefix
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.timeout = timeout
        if health_check_interval is not None and health_check_interval <= 0:
            raise ValueError("RedisBroker: health_check_interval must be > 0 seconds, or None")
        self.health_check_interval = health_check_interval
        self._connection_kwargs = connection_kwargs
        self._prefix = channel_prefix.encode()
        self._origin = uuid4().hex.encode()
        self._table = GroupTable()
        self._policy = HistoryPolicy(history) if history is not None else None
        self._streams: dict[str, GroupStream] = {}  # history groups with local members
        self._excluded: dict[bytes, Member] = {}  # seq -> the member a publish excludes
        self._seq = 0
        self._outages = 0
        self._outbox: deque[tuple[str, GroupHistory, bytes]] = deque(maxlen=outbox_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        # 16 hex digits name this process in presence: every present member's
        # Redis entries carry it, and 64 random bits are plenty to tell processes apart.
        self._presence = self._presence_type(
            self._prefix, self._origin[:16], presence_heartbeat, timeout
        )
        self.reconnects = 0
        """How many times the reader got Redis back after losing it (for metrics)."""
        self._reset_connection_state()

    def _reset_connection_state(self) -> None:
        self._pool: ConnectionPool | None = None
        self._publisher: Redis | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._batch: list[bytes] = []  # packed PUBLISH commands for the next round trip
        self._batch_sent: asyncio.Event | None = None  # set once that batch is acknowledged
        self._writer_wake: asyncio.Event | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._pong: asyncio.Event | None = None  # set by the reader on each PONG
        self._lock: asyncio.Lock | None = None
        self._connected: asyncio.Event | None = None
        self._attempted: asyncio.Event | None = None  # the first connect succeeded or failed
        self._conn: AbstractConnection | None = None  # the subscriber, once usable
        self._channels: set[bytes] = set()  # SUBSCRIBEd on the current connection
        self._acks: dict[bytes, deque[asyncio.Event]] = {}
        self._inflight: dict[bytes, asyncio.Event] = {}
        self._down = False
        self._publish_failing = False
        self._publish_kept_script: Any = None
        self._read_script: Any = None
        self._flush_lock: asyncio.Lock | None = None
        self._behind: set[str] = set()  # history groups to catch up from their streams
        self._resync: set[str] = set()  # ... once their SUBSCRIBE is confirmed
        self._presence.unbind()
        for stream in getattr(self, "_streams", {}).values():
            stream.lock = None  # bound to the old loop

    # -- public API ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the subscriber connection to Redis is up (and subscribed)."""
        return self._connected is not None and self._connected.is_set()

    async def start(self) -> None:
        """Start the reader now and wait (up to `timeout`) for its first connection attempt.

        Does not raise when Redis is unreachable: the reader keeps retrying
        (see `connected`) and local delivery works meanwhile.
        """
        if self._bind():
            await self._wait_connected()
        else:
            await self._on_home_loop(self._wait_connected())

    async def stop(self) -> None:
        """Cancel the reader and close the connections. The broker restarts on next use.

        Local members stay subscribed; on restart their groups are subscribed again.
        """
        loop = self._loop
        if loop is None or self._reader_task is None:
            return
        current = self._current_loop()
        if loop.is_closed() or (current is not loop and not loop.is_running()):
            self._reset_connection_state()  # its loop is gone: nothing left to close there
            return
        if current is loop:
            await self._shutdown()
        else:
            await self._on_home_loop(self._shutdown())

    async def subscribe(self, group: str, member: Member) -> None:
        """Add `member` to `group`; return once Redis has acknowledged the subscription.

        Raises `TimeoutError` (and leaves `member` out of `group`) if Redis
        neither confirms nor drops the connection within `timeout`.
        """
        if self._policy is not None and self._policy.of(group) is not None:
            await self.recover(group, member, None)  # joins the group's stream, at its end
            return
        home = self._bind()
        self._table.add(group, member)
        try:
            if home:
                await self._subscribe_confirmed(group)
            else:
                await self._on_home_loop(self._subscribe_confirmed(group))
        except BaseException:
            self._table.discard(group, member)
            raise

    async def unsubscribe(self, group: str, member: Member) -> None:
        """Remove `member` from `group`; idempotent. The last local member's leave unsubscribes."""
        if self._table.discard(group, member):
            self._streams.pop(group, None)
            await self._forget([group])

    async def unsubscribe_all(self, member: Member) -> None:
        """Remove `member` from every group; idempotent and safe in shielded cleanup.

        The member stops receiving at once; the Redis UNSUBSCRIBE for groups
        left empty is bounded by `timeout` and never raises.
        """
        emptied = self._table.discard_all(member)
        if emptied:
            for group in emptied:
                self._streams.pop(group, None)
            await self._forget(emptied)

    async def publish(self, group: str, message: Any, *, exclude: Member | None = None) -> None:
        """Deliver `message` to local members of `group` now, then to other processes via Redis.

        While this process is disconnected from Redis, only local members
        receive it; the failure is logged once per outage, never raised.
        In a group with history the message goes through Redis to every
        member, local ones included, with its position (see the class).
        """
        if self._policy is not None:
            config = self._policy.of(group)
            if config is not None:
                if self._bind():
                    await self._publish_kept(group, config, message, exclude)
                else:
                    await self._on_home_loop(self._publish_kept(group, config, message, exclude))
                return
        frame = encode_frame(message)
        home = self._bind()
        self._table.deliver(group, frame, exclude)
        if self._down:
            return
        text = frame.get("text")
        if text is not None:
            kind, body = b"t", text.encode()
        else:
            kind, body = b"b", frame["bytes"]
        channel = self._prefix + group.encode()
        # The whole PUBLISH command in one allocation: RESP framing, header and body.
        command = _PUBLISH_COMMAND % (
            len(channel),
            channel,
            _HEADER_SIZE + len(body),
            _MAGIC,
            self._origin,
            kind,
            body,
        )
        if home:
            await self._publish_remote(command)
        else:
            await self._on_home_loop(self._publish_remote(command))

    def history_of(self, group: str) -> GroupHistory | None:
        """The history `group` keeps, or None."""
        return None if self._policy is None else self._policy.of(group)

    async def recover(self, group: str, member: Member, since: Position | None) -> Recovery:
        """Subscribe `member`, first delivering what it missed after `since` (see `Broker`).

        Answers `reason="unavailable"` (and subscribes `member` live) when
        Redis cannot be read; raises `TimeoutError` as `subscribe` does.
        """
        config = self.history_of(group)
        if config is None:
            await self.subscribe(group, member)
            return NOT_KEPT
        if self._bind():
            return await self._recover(group, config, member, since)
        return await self._on_home_loop(self._recover(group, config, member, since))

    async def history(
        self, group: str, *, since: Position | None = None, limit: int | None = None
    ) -> HistoryPage:
        """Read `group`'s history from Redis (see `Broker.history`); raises when Redis is down."""
        check_limit(limit)
        config = self.history_of(group)
        if config is None:
            return HistoryPage([], None, False)
        if since is None:
            read = self._read(group, config, None, NEWEST, limit or 0)
        else:
            read = self._read(group, config, since.epoch, since.offset, limit or 0)
        epoch, top, stored = await read if self._bind() else await self._on_home_loop(read)
        stream = self._streams.get(group) or GroupStream(group)
        entries = [stream.entry(offset, value, epoch)[0] for offset, value in stored]
        if since is None:
            complete = True
        else:
            first = entries[0].position.offset if entries else None
            complete, _ = recovery_of(since, epoch, top, first)
        return HistoryPage(entries, Position(epoch, top), complete)

    # -- presence (see tether.brokers.redis_presence) ----------------------------

    async def track(self, group: str, member: Member, key: str, payload: Any = None) -> None:
        """Make `member` present in `group`, in Redis, for every process (see `Broker.track`).

        Raises `TypeError`/`ValueError` for a bad key or payload before any
        network call, and the Redis error when Redis cannot be reached.
        """
        run = self._presence.track(group, member, encode_entry(key, payload))
        await run if self._bind() else await self._on_home_loop(run)

    async def untrack(self, group: str, member: Member) -> None:
        """Remove `member` from `group`'s presence; bounded by `timeout`, never raises."""
        run = self._presence.untrack(group, member)
        await run if self._bind() else await self._on_home_loop(run)

    async def untrack_all(self, member: Member) -> None:
        """Remove `member` from all presence and stop its events; bounded, never raises."""
        self._presence.watchers.discard_all(member)
        if id(member) not in self._presence.entries.by_member or self._loop is None:
            return
        if self._reader_task is None:  # stopped: stop() took our members out of Redis
            self._presence.entries.pop_all(member)
            return
        try:
            run = self._presence.untrack_all(member)
            await run if self._bind() else await self._on_home_loop(run)
        except Exception as exc:  # cleanup must not fail; the heartbeat's sweep has the last word
            logger.debug("RedisBroker: leaving presence failed: %s", exc)

    async def watch_presence(self, group: str, member: Member) -> None:
        """Send `member` the presence diffs of `group` from every process.

        Also starts this process's sweep, so the leaves of a dead process reach
        `member` even when no member of this process is present itself.
        """
        self._presence.watchers.add(group, member)
        run = self._presence.swept()
        await run if self._bind() else await self._on_home_loop(run)

    async def unwatch_presence(self, group: str, member: Member) -> None:
        """Stop sending `member` the presence diffs of `group`."""
        self._presence.watchers.discard(group, member)

    async def presence(self, group: str) -> dict[str, list[Any]]:
        """Who is present in `group`, on every process (one `HVALS`)."""
        run = self._presence.members(group)
        return await run if self._bind() else await self._on_home_loop(run)

    async def presence_count(self, group: str) -> int:
        """How many distinct keys are present in `group` (one `HLEN`, whatever the size)."""
        run = self._presence.count(group)
        return await run if self._bind() else await self._on_home_loop(run)

    def presence_counts(self) -> dict[str, tuple[int, int]]:
        """`{group: (distinct keys, connections)}` made present by this process's connections.

        Synchronous, without a Redis call: what `TetherMetrics` reads at scrape
        time. Other processes' members are not in it; `presence_count(group)`
        asks Redis for the whole group.
        """
        return self._presence.entries.counts()

    def groups(self) -> list[str]:
        """The groups that have members in this process."""
        return self._table.groups()

    def members(self, group: str) -> tuple[Member, ...]:
        """The members of `group` in this process."""
        return self._table.members(group)

    # -- event loop ownership ---------------------------------------------

    def _current_loop(self) -> asyncio.AbstractEventLoop:
        loop = running_asyncio_loop()
        if loop is None:
            raise RuntimeError(
                "RedisBroker needs asyncio (redis.asyncio is asyncio-only); "
                "under trio use MemoryBroker, or run the app on asyncio"
            )
        return loop

    def _bind(self) -> bool:
        """Make sure the reader runs; return True if the caller is on the broker's loop."""
        loop = self._current_loop()
        home = self._loop
        if home is loop:
            if self._reader_task is None:
                self._start_reader()
            return True
        if home is not None and not home.is_closed() and home.is_running():
            return False
        if home is not None:
            logger.info("RedisBroker: event loop %r is gone, moving to %r", home, loop)
            self._reset_connection_state()
        self._loop = loop
        self._start_reader()
        return True

    async def _on_home_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop the broker is bound to, from another loop's thread."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wrap_future(future)

    def _start_reader(self) -> None:
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "socket_keepalive": True,
            "retry": None,  # we retry ourselves; redis-py's retries would stall a publish
            **self._connection_kwargs,
            "decode_responses": False,
            "protocol": 2,
        }
        self._pool = ConnectionPool.from_url(self.url, **kwargs)
        self._publisher = Redis(connection_pool=self._pool)
        self._publish_kept_script = self._publisher.register_script(PUBLISH_SCRIPT)
        self._read_script = self._publisher.register_script(READ_SCRIPT)
        self._presence.bind(self._publisher)
        self._flush_lock = asyncio.Lock()
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        assert self._loop is not None
        self._reader_task = self._loop.create_task(self._read_forever(), name="tether-redis-reader")
        self._writer_wake = asyncio.Event()
        self._writer_task = self._loop.create_task(
            self._write_forever(), name="tether-redis-writer"
        )
        if self.health_check_interval is not None:
            self._pong = asyncio.Event()
            self._health_task = self._loop.create_task(
                self._check_health_forever(self.health_check_interval),
                name="tether-redis-health",
            )

    async def _shutdown(self) -> None:
        task, pool, publisher = self._reader_task, self._pool, self._publisher
        writer, unsent, health = self._writer_task, self._batch_sent, self._health_task
        conn = self._conn
        await self._presence.stop()
        self._reset_connection_state()
        if unsent is not None:
            unsent.set()  # never raises: those publishes reach local members only
        await cancel_and_wait(t for t in (task, writer, health) if t is not None)
        if conn is not None:
            await conn.disconnect()
        if publisher is not None:
            await publisher.aclose()
        if pool is not None:
            await pool.disconnect()

    async def _wait_connected(self) -> None:
        """Wait (bounded) for the reader's first connection attempt to succeed or fail."""
        assert self._attempted is not None
        with anyio.move_on_after(self.timeout):
            await self._attempted.wait()

    # -- the reader ---------------------------------------------------------

    @property
    def _where(self) -> str:
        if self._pool is None:
            return "?"
        kwargs = self._pool.connection_kwargs
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    async def _read_forever(self) -> None:
        """Connect, (re)subscribe, and route pub/sub messages; reconnect with backoff."""
        pool = self._pool
        assert pool is not None and self._lock is not None
        assert self._connected is not None and self._attempted is not None
        delay = self.reconnect_delay
        failures = 0
        while True:
            conn = pool.make_connection()
            try:
                await conn.connect()
                async with self._lock:
                    channels = [self._prefix + group.encode() for group in self._table.groups()]
                    self._conn = conn
                    if channels:
                        await self._send(conn, "SUBSCRIBE", channels)
                if failures:
                    self.reconnects += 1
                    logger.info(
                        "RedisBroker reconnected to Redis at %s, re-subscribed to %d group(s)",
                        self._where,
                        len(channels),
                    )
                self._down = False
                self._connected.set()
                self._attempted.set()
                failures, delay = 0, self.reconnect_delay
                # Catch up each history group once its SUBSCRIBE is confirmed: from
                # then on nothing new is missed, and the stream holds the rest.
                self._resync = {g for g in self._streams if self._prefix + g.encode() in channels}
                if self._outbox:
                    await self._flush_outbox()
                while True:
                    if self._route(await conn.read_response(timeout=math.inf)):
                        await self._catch_up()
            except asyncio.CancelledError:
                # By stop(), or by the loop shutting down (asyncio.run cancels
                # leftover tasks): either way, close what this reader owns.
                if self._reader_task is asyncio.current_task():
                    self._lost()
                await conn.disconnect(nowait=True)
                await pool.disconnect()
                raise
            except Exception as exc:
                self._lost()
                await conn.disconnect(nowait=True)
                self._attempted.set()
                level = logging.WARNING if failures == 0 else logging.DEBUG
                logger.log(
                    level,
                    "RedisBroker lost Redis at %s (%s); local delivery continues, "
                    "retrying in %.2fs",
                    self._where,
                    exc,
                    delay,
                )
                failures += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)

    async def _check_health_forever(self, interval: float) -> None:
        """PING the subscriber connection every `interval`; drop it when no PONG comes back.

        Dropping it makes the reader's blocked read fail, so the reader
        reconnects as after any loss. Nothing of this runs per message.
        """
        pong, lock = self._pong, self._lock
        assert pong is not None and lock is not None
        while True:
            await asyncio.sleep(interval)
            conn = self._conn
            if conn is None or not conn.is_connected:
                continue  # down: the reader is already reconnecting
            pong.clear()
            async with lock:
                if conn is not self._conn:
                    continue
                try:
                    await conn.send_command("PING", check_health=False)
                except _REDIS_DOWN:
                    await conn.disconnect(nowait=True)
                    continue
            try:
                with anyio.fail_after(self.timeout):
                    await pong.wait()
            except TimeoutError:
                if conn is self._conn:
                    logger.warning(
                        "RedisBroker: Redis at %s did not answer PING within %.1fs; reconnecting",
                        self._where,
                        self.timeout,
                    )
                    await conn.disconnect(nowait=True)

    def _lost(self) -> None:
        """Forget the subscriber connection and release everyone waiting on it."""
        self._conn = None
        self._down = True
        self._outages += 1  # the writer's connection, too, is from before the outage
        self._channels.clear()
        if self._connected is not None:
            self._connected.clear()
        for waiting in self._acks.values():
            for event in waiting:
                event.set()
        self._acks.clear()
        self._inflight.clear()

    def _route(self, response: Any) -> bool:
        """Act on one pub/sub reply; True when a history group must catch up first."""
        kind = response[0]
        if kind == b"message":
            return self._deliver_remote(response[1], response[2])
        if kind == b"pong" or response == b"PONG":  # subscribed, or not subscribed yet
            if self._pong is not None:
                self._pong.set()
            return False
        if kind == b"subscribe":
            channel = response[1]
            waiting = self._acks.get(channel)
            if waiting:
                event = waiting.popleft()
                if not waiting:
                    del self._acks[channel]
                if self._inflight.get(channel) is event:
                    del self._inflight[channel]
                event.set()
            if self._resync:
                group = channel[len(self._prefix) :].decode()
                if group in self._resync:
                    self._resync.discard(group)
                    self._behind.add(group)
                    return True
        return False

    def _deliver_remote(self, channel: bytes, data: bytes) -> bool:
        group = channel[len(self._prefix) :].decode()
        if data.startswith(_MAGIC):
            header = data[:_HEADER_SIZE]
            if header[len(_MAGIC) : len(_MAGIC) + 32] == self._origin:
                return  # ours: already delivered locally when it was published
            body = data[_HEADER_SIZE:]
            if header[-2:-1] == b"t":
                frame = {"type": "websocket.send", "text": body.decode()}
            else:
                frame = {"type": "websocket.send", "bytes": body}
        elif data.startswith(KEPT_MAGIC):
            return self._deliver_kept(group, data)
        elif data.startswith(PRESENCE_MAGIC):
            self._presence.deliver_change(group, data)
            return False
        else:
            # Published by something else (e.g. `redis-cli PUBLISH tether:room hi`).
            try:
                frame = {"type": "websocket.send", "text": data.decode()}
            except UnicodeDecodeError:
                frame = {"type": "websocket.send", "bytes": data}
        self._table.deliver(group, frame, None)
        return False

    # -- groups with history (on the broker's loop) -------------------------------

    def _deliver_kept(self, group: str, data: bytes) -> bool:
        """Deliver a message with its position, in offset order; True on a gap."""
        stream = self._streams.get(group)
        if stream is None:
            return False  # no local member keeps up with this group
        _, epoch_, offset_, value = data.split(b" ", 3)
        epoch, offset = epoch_.decode(), int(offset_)
        if epoch == stream.epoch:
            if offset <= stream.offset:
                return False  # already delivered, by a catch-up
            if offset != stream.offset + 1:
                self._behind.add(group)  # the stream has what came in between
                return True
        elif stream.epoch is not None:
            self._behind.add(group)  # a new epoch: the history was lost
            return True
        stream.epoch, stream.offset = epoch, offset
        self._deliver_entry(group, stream.entry(offset, value, epoch))
        return False

    def _deliver_entry(self, group: str, entry: tuple[HistoryEntry, bytes, bytes]) -> None:
        kept, origin, seq = entry
        exclude = None
        if seq != b"-" and origin == self._origin:
            exclude = self._excluded.pop(seq, None)
        self._table.deliver(group, kept.frame, exclude)

    def _apply(
        self, group: str, stream: GroupStream, epoch: str, top: int, stored: list[tuple[int, bytes]]
    ) -> None:
        """Bring local members up to `top` with what a read of the stream found."""
        if stream.epoch is None:
            stream.epoch, stream.offset = epoch, top  # first read: nothing delivered before it
            return
        if stream.epoch != epoch:
            stream.epoch, stream.offset = epoch, 0  # `stored` starts the new epoch
        for offset, value in stored:
            if offset > stream.offset:
                self._deliver_entry(group, stream.entry(offset, value, epoch))
        stream.offset = max(stream.offset, top)

    async def _catch_up(self) -> None:
        """Read the groups that fell behind from their streams and deliver what was missed."""
        while self._behind:
            group = self._behind.pop()
            stream = self._streams.get(group)
            config = self.history_of(group)
            if stream is None or config is None:
                continue
            if stream.epoch is None:
                epoch, top, stored = await self._read(group, config, None, NONE)
            else:
                epoch, top, stored = await self._read(group, config, stream.epoch, stream.offset)
            self._apply(group, stream, epoch, top, stored)

    def _key(self, group: str) -> bytes:
        """What stands for `group` in the names of its history keys; RedisClusterBroker tags it."""
        return group.encode()

    async def _read(
        self, group: str, config: GroupHistory, expected: str | None, after: int, count: int = 0
    ) -> tuple[str, int, list[tuple[int, bytes]]]:
        key = self._key(group)
        reply = await self._read_script(
            keys=[self._prefix + b"epoch:" + key, self._prefix + b"history:" + key],
            args=[new_epoch(), round(config.ttl * 1e3), expected or "", after, count],
        )
        return read_reply(reply)

    async def _recover(
        self, group: str, config: GroupHistory, member: Member, since: Position | None
    ) -> Recovery:
        stream = self._streams.get(group)
        if stream is None:
            stream = self._streams[group] = GroupStream(group)
        if stream.lock is None:
            stream.lock = asyncio.Lock()
        async with stream.lock:  # one at a time: each sees the previous one's seam
            buffer = _Buffer()
            self._table.add(group, buffer)
            try:
                await self._subscribe_confirmed(group)
                if stream.epoch is None:
                    expected = since.epoch if since is not None else None
                    after = since.offset if since is not None else NONE
                else:
                    expected, after = stream.epoch, stream.offset
                    if since is not None and since.epoch == stream.epoch:
                        after = min(after, since.offset)
                try:
                    epoch, top, stored = await self._read(group, config, expected, after)
                except _REDIS_DOWN as exc:
                    logger.warning("RedisBroker cannot read the history of %r: %s", group, exc)
                    self._table.add(group, member)
                    return Recovery(False, None, reason="unavailable")
                # From here to the swap nothing awaits: no message slips between.
                self._apply(group, stream, epoch, top, stored)
                replay: list[HistoryEntry] = []
                if since is None:
                    recovered, reason = False, "new"
                else:
                    if since.epoch == epoch:
                        replay = [
                            stream.entry(offset, value, epoch)[0]
                            for offset, value in stored
                            if offset > since.offset
                        ]
                    first = replay[0].position.offset if replay else None
                    recovered, reason = recovery_of(since, epoch, top, first)
                # Live ones after the read (the read's own, and older, are replayed).
                live = [
                    frame
                    for frame in buffer.frames
                    if frame["position"].epoch != epoch or frame["position"].offset > top
                ]
                room = room_for(member)
                if recovered and room is not None and len(replay) + len(live) > room:
                    recovered, reason = False, "overflow"
                if not recovered:
                    replay = []
                for entry in replay:
                    member.deliver(entry.frame)
                for frame in live:
                    member.deliver(frame)
                self._table.add(group, member)
                return Recovery(recovered, Position(epoch, top), len(replay), reason)
            finally:
                if self._table.discard(group, buffer):
                    self._streams.pop(group, None)  # failed before the member went live

    async def _publish_kept(
        self, group: str, config: GroupHistory, message: Any, exclude: Member | None
    ) -> None:
        data = encode_data(message)
        kind, body = (b"t", data.encode()) if isinstance(data, str) else (b"b", data)
        seq = b"-"
        if exclude is not None:
            self._seq += 1
            seq = b"%d" % self._seq
            if len(self._excluded) >= _EXCLUDED_LIMIT:
                del self._excluded[next(iter(self._excluded))]  # its echo never came back
            self._excluded[seq] = exclude
        value = b"%s %s %s\n%s" % (self._origin, seq, kind, body)
        item = (group, config, value)
        if self._outbox or self._down:  # earlier ones wait, or Redis is known down
            self._queue_for_later(item, None)
            if not self._down:
                await self._flush_outbox(quiet=True)
            return
        try:
            await self._run_publish(item)
        except _REDIS_DOWN as exc:
            self._queue_for_later(item, exc)

    def _queue_for_later(
        self, item: tuple[str, GroupHistory, bytes], exc: BaseException | None
    ) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            logger.warning("RedisBroker outbox full: the oldest unsent message is dropped")
        self._outbox.append(item)
        if not self._publish_failing:
            self._publish_failing = True
            logger.warning(
                "RedisBroker cannot publish to Redis at %s (%s); messages to groups with "
                "history wait in the outbox until it is back",
                self._where,
                exc or "disconnected",
            )

    async def _run_publish(self, item: tuple[str, GroupHistory, bytes]) -> None:
        group, config, value = item
        key = self._key(group)
        await self._publish_kept_script(
            keys=[self._prefix + b"epoch:" + key, self._prefix + b"history:" + key],
            args=[self._prefix + key, new_epoch(), config.size, round(config.ttl * 1e3), value],
        )

    async def _flush_outbox(self, *, quiet: bool = False) -> None:
        """Send what waits in the outbox, oldest first; stop at the first failure."""
        assert self._flush_lock is not None
        async with self._flush_lock:
            outbox = self._outbox
            try:
                while outbox:
                    await self._run_publish(outbox[0])
                    outbox.popleft()
            except _REDIS_DOWN:
                if not quiet:
                    raise
                return
            if self._publish_failing:
                self._publish_failing = False
                logger.info("RedisBroker publishing to Redis at %s again", self._where)

    # -- subscription bookkeeping (on the broker's loop) ---------------------

    async def _send(self, conn: AbstractConnection, command: str, channels: list[bytes]) -> None:
        """Send (UN)SUBSCRIBE; the caller holds the lock. Bookkeeping happens before the
        write, so the reader's `_lost()` after a failed write always has the last word."""
        if command == "SUBSCRIBE":
            self._channels.update(channels)
            for channel in channels:
                event = asyncio.Event()
                self._acks.setdefault(channel, deque()).append(event)
                self._inflight[channel] = event
        else:
            self._channels.difference_update(channels)
        try:
            await conn.send_command(command, *channels, check_health=False)
        except _REDIS_DOWN:
            # The reader sees the broken connection too and reconnects.
            await conn.disconnect(nowait=True)

    async def _sync_channels(self, groups: Iterable[str]) -> list[asyncio.Event]:
        """Make Redis subscriptions match local membership for `groups`.

        Returns the pending acknowledgements the caller should wait for.
        """
        assert self._lock is not None
        async with self._lock:
            conn = self._conn
            if conn is None or not conn.is_connected:
                return []  # down: the reader re-subscribes everything on reconnect
            join: list[bytes] = []
            leave: list[bytes] = []
            for group in groups:
                channel = self._prefix + group.encode()
                wanted = group in self._table
                if wanted and channel not in self._channels:
                    join.append(channel)
                elif not wanted and channel in self._channels:
                    leave.append(channel)
            if leave:
                await self._send(conn, "UNSUBSCRIBE", leave)
            if join:
                await self._send(conn, "SUBSCRIBE", join)
            pending = (self._inflight.get(self._prefix + group.encode()) for group in groups)
            return [event for event in pending if event is not None]

    async def _subscribe_confirmed(self, group: str) -> None:
        with anyio.fail_after(self.timeout):
            # On first use the reader is still connecting; it subscribes every
            # group in the table, ours included, once it is through.
            await self._wait_connected()
            pending = await self._sync_channels([group])
            for event in pending:
                await event.wait()

    async def _forget(self, groups: list[str]) -> None:
        """UNSUBSCRIBE groups left empty; bounded, never raises, skipped if not bound."""
        loop = self._loop
        if loop is None or self._reader_task is None or not loop.is_running():
            return
        try:
            with anyio.move_on_after(self.timeout):
                if asyncio.get_running_loop() is loop:
                    await self._sync_channels(groups)
                else:
                    await self._on_home_loop(self._sync_channels(groups))
        except Exception as exc:  # cleanup must not fail; a stray subscription is harmless
            logger.debug("RedisBroker: UNSUBSCRIBE %s failed: %s", groups, exc)

    async def _publish_remote(self, command: bytes) -> None:
        """Queue one packed PUBLISH for the writer; return once Redis acknowledged it.

        Publishes made while a round trip is in flight go out together in the
        next one: one write and one read for all of them (group commit).
        """
        self._batch.append(command)
        sent = self._batch_sent
        if sent is None:
            sent = self._batch_sent = asyncio.Event()
            assert self._writer_wake is not None
            self._writer_wake.set()
        # An Event, not a shared future: a cancelled publisher must not cancel the others.
        await sent.wait()

    async def _write_forever(self) -> None:
        """Send the pending PUBLISH commands, one pipelined round trip per batch."""
        pool, wake = self._pool, self._writer_wake
        assert pool is not None and wake is not None
        conn: AbstractConnection | None = None
        outages = self._outages
        try:
            while True:
                await wake.wait()
                wake.clear()
                batch, sent = self._batch, self._batch_sent
                self._batch, self._batch_sent = [], None
                if sent is None:
                    continue
                try:
                    if conn is not None and outages != self._outages:
                        await conn.disconnect(nowait=True)
                        conn = None
                    if conn is None:
                        outages = self._outages
                        conn = pool.make_connection()
                        await conn.connect()
                    # One deadline for the whole round trip, not one per reply.
                    with anyio.fail_after(self.timeout):
                        await conn.send_packed_command(batch, check_health=False)
                        for _ in batch:
                            reply = await conn.read_response(timeout=math.inf)
                            if isinstance(reply, Exception):  # e.g. NOPERM from an ACL
                                raise reply
                except Exception as exc:  # whatever failed, the writer must go on: never raise
                    if conn is not None:
                        await conn.disconnect(nowait=True)
                        conn = None
                    if not self._publish_failing:
                        self._publish_failing = True
                        logger.warning(
                            "RedisBroker cannot publish to Redis at %s (%s); "
                            "only local members receive messages until it is back",
                            self._where,
                            exc,
                        )
                else:
                    if self._publish_failing:
                        self._publish_failing = False
                        logger.info("RedisBroker publishing to Redis at %s again", self._where)
                finally:
                    sent.set()
        finally:
            if conn is not None:
                await conn.disconnect(nowait=True)
