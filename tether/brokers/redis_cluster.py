"""`RedisClusterBroker`: `RedisBroker` on a Redis Cluster, over sharded pub/sub (Redis 7+)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, ResponseError

from tether.brokers.base import Member
from tether.brokers.cancelling import cancel_and_wait
from tether.brokers.redis import _HEADER_SIZE, _MAGIC, _REDIS_DOWN, RedisBroker
from tether.brokers.redis_cluster_presence import ClusterPresence
from tether.brokers.shard_names import group_of_tagged, tagged_name
from tether.brokers.streams import READ_SCRIPT, SHARDED_PUBLISH_SCRIPT
from tether.di.compiler import ConfigurationError
from tether.frames import encode_frame

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["RedisClusterBroker"]

logger = logging.getLogger("tether")

# SPUBLISH <channel> <header + body>, RESP-encoded; filled in by `publish`.
_SPUBLISH_COMMAND = b"*3\r\n$8\r\nSPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s%s %s\n%s\r\n"


class _ShardLink:
    """One cluster node's subscriber connection and the shard channels it should carry."""

    __slots__ = ("channels", "conn", "down", "host", "name", "port", "resync", "scope")

    def __init__(self, node: ClusterNode) -> None:
        self.host, self.port, self.name = node.host, int(node.port), node.name
        self.channels: set[bytes] = set()  # owned by this node and wanted by local members
        self.conn: AbstractConnection | None = None  # set while connected
        self.down = False  # the last connection attempt failed: joins do not wait for it
        self.resync: set[bytes] = set()  # history channels to catch up once confirmed
        self.scope: anyio.CancelScope | None = None

    @property
    def usable(self) -> bool:
        return self.conn is not None and self.conn.is_connected


class RedisClusterBroker(RedisBroker):
    """`RedisBroker` for a Redis Cluster: each group's traffic stays on the shard that owns it.

    ```python
    broker = RedisClusterBroker("redis://10.0.0.1:7000")   # any node; it finds the others
    ```

    Everything `RedisBroker` does, with the same arguments and the same
    guarantees. The differences:

    - A group's fan-out uses sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`,
      Redis 7 or newer): a message is sent to, and relayed by, only the
      node that owns the group's slot, where classic `PUBLISH` on a
      cluster is broadcast over the cluster bus to every node.
    - Every name kept for a group (channel, history stream, meta hash)
      carries the group's hash tag (see `tether.brokers.shard_names`), so
      they hash to one slot: the history script runs on that shard too.
      The channel of group `room:1` is `tether:{room:1}`.
    - The process holds one subscriber connection per node that owns a
      group with local members, and the writer batches publishes per node:
      one pipelined write to each node per round trip.
    - A `MOVED`/`ASK` answer, a slot migrated away (the node's
      `sunsubscribe`) or a lost node connection makes the broker reload the
      cluster's slot map and move each group's subscription to the node
      that owns it now. A lost node is reconnected with backoff and its
      groups re-subscribed; groups with history catch up from their
      streams, as on a single Redis.
    - The PING health check runs on each node's subscriber connection.
    - Presence (`join(presence=...)`, `presence()`, `presence_count()`,
      `presence_events`) has `RedisBroker`'s guarantees, with every key of
      a group in the group's slot (see `tether.brokers.redis_cluster_presence`):
      the heartbeat refreshes and sweeps each group this process has members
      in or watches, one script per group, pipelined per node.

    `channel_prefix` must not contain `{` or `}` (it would move the hash
    tag). The URL may name any node; the others are found from it.
    """

    _presence_type = ClusterPresence
    _presence: ClusterPresence

    def __init__(self, url: str = "redis://127.0.0.1:7000", **options: Any) -> None:
        """Configure the broker; the options are `RedisBroker`'s. Nothing connects yet."""
        super().__init__(url, **options)
        if b"{" in self._prefix or b"}" in self._prefix:
            raise ConfigurationError(
                f"RedisClusterBroker: channel_prefix {self.channel_prefix!r} must not contain "
                "'{' or '}': they would change which slot a group's names hash to"
            )

    def _reset_connection_state(self) -> None:
        super()._reset_connection_state()
        self._cluster: RedisCluster | None = None
        self._links: dict[str, _ShardLink] = {}  # node name -> its subscriber link
        self._wanted: dict[bytes, _ShardLink] = {}  # channel -> the link that carries it
        self._confirmed: dict[bytes, asyncio.Event] = {}  # channel -> set once subscribed
        self._refresh: asyncio.Event | None = None  # set: reload the slot map
        self._task_group: TaskGroup | None = None
        self._slots: list[int] = []  # the slot of each SPUBLISH in `_batch`, in order

    # -- names ---------------------------------------------------------------

    def _channel(self, group: str) -> bytes:
        return self._prefix + tagged_name(group)

    def _key(self, group: str) -> bytes:
        return tagged_name(group)  # the history keys hash to the group's slot too

    def _group_channel(self, channel: bytes) -> bytes:
        """The channel name `RedisBroker`'s delivery code expects: prefix + group."""
        return self._prefix + group_of_tagged(channel[len(self._prefix) :])

    # -- public API ---------------------------------------------------------

    async def publish(self, group: str, message: Any, *, exclude: Member | None = None) -> None:
        """Deliver `message` to local members now, then SPUBLISH it on the group's shard.

        As `RedisBroker.publish`: never raises when Redis is unreachable,
        and a group with history goes through its stream.
        """
        if self._policy is not None and self._policy.of(group) is not None:
            await super().publish(group, message, exclude=exclude)
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
        channel = self._channel(group)
        command = _SPUBLISH_COMMAND % (
            len(channel),
            channel,
            _HEADER_SIZE + len(body),
            _MAGIC,
            self._origin,
            kind,
            body,
        )
        slot = key_slot(channel)
        if home:
            await self._publish_sharded(slot, command)
        else:
            await self._on_home_loop(self._publish_sharded(slot, command))

    # -- start and stop ---------------------------------------------------------

    @property
    def _where(self) -> str:
        return self.url

    def _start_reader(self) -> None:
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "socket_keepalive": True,
            **self._connection_kwargs,
            "decode_responses": False,
            "protocol": 2,
        }
        self._cluster = RedisCluster.from_url(self.url, **kwargs)
        self._publish_kept_script = self._cluster.register_script(SHARDED_PUBLISH_SCRIPT)
        self._read_script = self._cluster.register_script(READ_SCRIPT)
        self._presence.bind(self._cluster)
        self._flush_lock = asyncio.Lock()
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._writer_wake = asyncio.Event()
        self._refresh = asyncio.Event()
        assert self._loop is not None
        # One task the broker owns (as RedisBroker's reader); the node links,
        # the writer and the slot-map refresher run in its task group.
        self._reader_task = self._loop.create_task(
            self._read_forever(), name="tether-redis-cluster"
        )

    async def _shutdown(self) -> None:
        task, cluster, unsent = self._reader_task, self._cluster, self._batch_sent
        await self._presence.stop()
        self._reset_connection_state()
        if unsent is not None:
            unsent.set()  # never raises: those publishes reach local members only
        if task is not None:
            await cancel_and_wait([task])
        if cluster is not None:
            await cluster.aclose()

    async def _read_forever(self) -> None:
        """Load the slot map (with backoff), then run the links, the writer and the refresher."""
        cluster, refresh = self._cluster, self._refresh
        assert cluster is not None and refresh is not None and self._lock is not None
        assert self._connected is not None and self._attempted is not None
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            tg.start_soon(self._write_forever)
            tg.start_soon(self._presence.beat_forever)
            delay, failures = self.reconnect_delay, 0
            while True:
                try:
                    with anyio.fail_after(self.timeout):
                        await cluster.initialize()
                    break
                except Exception as exc:
                    self._down = True
                    self._attempted.set()
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    logger.log(
                        level,
                        "RedisClusterBroker cannot load the slot map from %s (%s); "
                        "local delivery continues, retrying in %.2fs",
                        self.url,
                        exc,
                        delay,
                    )
                    failures += 1
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.max_reconnect_delay)
            if failures:
                self.reconnects += 1
                logger.info("RedisClusterBroker reached the cluster at %s", self.url)
            self._down = False
            self._connected.set()
            tg.start_soon(self._refresh_forever)
            async with self._lock:
                await self._place(self._table.groups())
            self._attempted.set()
            if self._outbox:
                await self._flush_outbox(quiet=True)

    # -- subscriptions ----------------------------------------------------------

    def _owner(self, slot: int) -> ClusterNode:
        assert self._cluster is not None
        return self._cluster.nodes_manager.get_node_from_slot(slot)

    def _link_to(self, node: ClusterNode) -> _ShardLink:
        """The link to `node`, started if it is new; the caller holds the lock."""
        link = self._links.get(node.name)
        if link is None:
            link = self._links[node.name] = _ShardLink(node)
            assert self._task_group is not None
            self._task_group.start_soon(self._serve_link, link, name=f"tether-redis-{node.name}")
        return link

    def _close_if_idle(self, link: _ShardLink) -> None:
        if not link.channels and self._links.get(link.name) is link:
            del self._links[link.name]
            if link.scope is not None:
                link.scope.cancel()

    async def _ssend(self, link: _ShardLink, command: str, channels: list[bytes]) -> None:
        """Send one (S)UN/SUBSCRIBE per channel, pipelined; the caller holds the lock.

        One command per channel: a sharded subscription may name only one slot.
        """
        conn = link.conn
        if conn is None:
            return
        if command == "SSUBSCRIBE":
            for channel in channels:
                event = self._confirmed.get(channel)
                if event is None or event.is_set():
                    self._confirmed[channel] = asyncio.Event()
        try:
            packed = conn.pack_commands([(command, channel) for channel in channels])
            await conn.send_packed_command(packed, check_health=False)
        except _REDIS_DOWN:
            await conn.disconnect(nowait=True)  # the link's reader notices and reconnects

    async def _place(self, groups: list[str]) -> None:
        """Make the sharded subscriptions of `groups` match local membership; under the lock."""
        join: dict[str, list[bytes]] = {}
        for group in groups:
            channel = self._channel(group)
            wanted = group in self._table
            link = self._wanted.get(channel)
            if wanted and link is None:
                try:
                    link = self._link_to(self._owner(key_slot(channel)))
                except Exception as exc:  # the slot map has no owner for it (yet)
                    logger.debug("RedisClusterBroker: no node for %r yet: %s", group, exc)
                    assert self._refresh is not None
                    self._refresh.set()
                    continue
                link.channels.add(channel)
                self._wanted[channel] = link
                if link.usable:
                    join.setdefault(link.name, []).append(channel)
                elif channel not in self._confirmed:
                    self._confirmed[channel] = asyncio.Event()
                    if link.down:
                        self._confirmed[channel].set()  # as RedisBroker: no wait while down
            elif not wanted and link is not None:
                del self._wanted[channel]
                link.channels.discard(channel)
                event = self._confirmed.pop(channel, None)
                if event is not None:
                    event.set()
                if link.usable:
                    await self._ssend(link, "SUNSUBSCRIBE", [channel])
                self._close_if_idle(link)
        for name, channels in join.items():
            await self._ssend(self._links[name], "SSUBSCRIBE", channels)

    async def _sync_channels(self, groups: Any) -> list[asyncio.Event]:
        """Subscribe or unsubscribe `groups` on their shards; the acknowledgements to wait for."""
        assert self._lock is not None
        groups = list(groups)
        async with self._lock:
            if self._down or self._task_group is None:
                return []  # not placed yet: the start-up places every group
            await self._place(groups)
            pending = (self._confirmed.get(self._channel(group)) for group in groups)
            return [event for event in pending if event is not None and not event.is_set()]

    async def _rebalance(self) -> None:
        """After the slot map changed: move each channel to the node that owns it now."""
        assert self._lock is not None
        async with self._lock:
            moves: dict[str, list[bytes]] = {}
            for channel, link in list(self._wanted.items()):
                try:
                    owner = self._owner(key_slot(channel))
                except Exception:  # still uncovered: stay where it is, try again later
                    continue
                if owner.name == link.name:
                    continue
                link.channels.discard(channel)
                if link.usable:
                    await self._ssend(link, "SUNSUBSCRIBE", [channel])
                new = self._link_to(owner)
                new.channels.add(channel)
                self._wanted[channel] = new
                moves.setdefault(new.name, []).append(channel)
                self._close_if_idle(link)
            for name, channels in moves.items():
                link = self._links[name]
                if link.usable:
                    await self._ssend(link, "SSUBSCRIBE", channels)

    async def _refresh_forever(self) -> None:
        """Reload the slot map whenever a link or the writer asks; at most once per backoff step."""
        refresh, cluster = self._refresh, self._cluster
        assert refresh is not None and cluster is not None
        while True:
            await refresh.wait()
            refresh.clear()
            try:
                with anyio.fail_after(self.timeout):
                    await cluster.nodes_manager.initialize()
            except Exception as exc:
                logger.debug("RedisClusterBroker: reloading the slot map failed: %s", exc)
                refresh.set()  # try again after the pause below
            else:
                await self._rebalance()
            await anyio.sleep(self.reconnect_delay)  # one reload for a burst of reasons

    # -- a node's subscriber link -------------------------------------------------

    def _connection(self, link: _ShardLink) -> AbstractConnection:
        assert self._cluster is not None
        node = self._cluster.nodes_manager.nodes_cache.get(link.name)
        kwargs = dict(node.connection_kwargs) if node is not None else {}
        kwargs.update(host=link.host, port=link.port)
        return Connection(**kwargs)

    async def _serve_link(self, link: _ShardLink) -> None:
        """Connect to a node, SSUBSCRIBE its channels, route what comes; reconnect with backoff."""
        assert self._lock is not None and self._refresh is not None
        delay, failures = self.reconnect_delay, 0
        interval = self.health_check_interval
        with anyio.CancelScope() as scope:
            link.scope = scope
            if self._links.get(link.name) is not link:
                return  # closed before it started
            while True:
                conn = self._connection(link)
                try:
                    await conn.connect()
                    async with self._lock:
                        link.conn, link.down = conn, False
                        channels = sorted(link.channels)
                        if channels:
                            await self._ssend(link, "SSUBSCRIBE", channels)
                        link.resync = {c for c in channels if self._group_name(c) in self._streams}
                    if failures:
                        self.reconnects += 1
                        logger.info(
                            "RedisClusterBroker reconnected to node %s, re-subscribed to "
                            "%d group(s)",
                            link.name,
                            len(channels),
                        )
                        self._refresh.set()  # it may own other slots now
                    failures, delay = 0, self.reconnect_delay
                    if self._outbox:
                        await self._flush_outbox(quiet=True)
                    await self._route_link(link, conn, interval)
                except Exception as exc:
                    await self._link_lost(link, conn)
                    self._refresh.set()
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    logger.log(
                        level,
                        "RedisClusterBroker lost node %s (%s); retrying in %.2fs",
                        link.name,
                        exc,
                        delay,
                    )
                    failures += 1
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.max_reconnect_delay)
                finally:
                    with anyio.CancelScope(shield=True):
                        await conn.disconnect(nowait=True)

    async def _link_lost(self, link: _ShardLink, conn: AbstractConnection) -> None:
        """Forget `link`'s connection; release joins waiting on it (as RedisBroker does)."""
        if link.conn is conn:
            link.conn = None
        link.down = True
        for channel in link.channels:
            event = self._confirmed.get(channel)
            if event is not None:
                event.set()

    def _group_name(self, channel: bytes) -> str:
        return group_of_tagged(channel[len(self._prefix) :]).decode()

    async def _route_link(
        self, link: _ShardLink, conn: AbstractConnection, interval: float | None
    ) -> None:
        """Read one node's pushes until the connection fails; PING it when it is quiet."""
        wait = math.inf if interval is None else interval
        pinged = False
        while True:
            try:
                response = await conn.read_response(timeout=wait)
            except (MovedError, AskError) as exc:
                # An SSUBSCRIBE reached a node that no longer owns the slot.
                self._slot_moved(link, exc.slot_id)
                continue
            if response is None:  # quiet for `wait` seconds
                if pinged:
                    raise ConnectionError(f"no answer to PING within {self.timeout}s")
                async with self._lock:  # type: ignore[union-attr]
                    await conn.send_command("PING", check_health=False)
                pinged, wait = True, self.timeout
                continue
            if pinged:  # anything that arrives shows the node is alive, the PONG included
                pinged, wait = False, math.inf if interval is None else interval
            if self._route_push(link, response):
                await self._catch_up()

    def _slot_moved(self, link: _ShardLink, slot: int) -> None:
        """A MOVED for `slot`: its channels wait on this link until the refresh moves them."""
        assert self._refresh is not None
        self._refresh.set()
        logger.info("RedisClusterBroker: slot %d moved away from node %s", slot, link.name)

    def _route_push(self, link: _ShardLink, response: Any) -> bool:
        """Act on one push from a node; True when a history group must catch up first."""
        kind = response[0]
        if kind == b"smessage":
            return self._deliver_remote(self._group_channel(response[1]), response[2])
        if kind == b"ssubscribe":
            channel = response[1]
            event = self._confirmed.get(channel)
            if event is not None and self._wanted.get(channel) is link:
                event.set()
            if channel in link.resync:
                link.resync.discard(channel)
                group = self._group_name(channel)
                if group in self._streams:
                    self._behind.add(group)
                    return True
        elif kind == b"sunsubscribe" and self._wanted.get(response[1]) is link:
            # Not ours (we forget a channel before we leave it): its slot was migrated away.
            assert self._refresh is not None
            self._refresh.set()
        return False

    # -- the writer: one pipelined round trip per node and batch -----------------

    async def _publish_sharded(self, slot: int, command: bytes) -> None:
        """Queue one packed SPUBLISH for the writer; return once its node acknowledged it."""
        # `_slots` runs parallel to `_batch`: both grow here, with no await between.
        self._slots.append(slot)
        await self._publish_remote(command)

    async def _write_forever(self) -> None:
        """Send pending SPUBLISHes: per batch, one write to each node, then read their replies."""
        wake = self._writer_wake
        assert wake is not None
        conns: dict[str, AbstractConnection] = {}
        try:
            while True:
                await wake.wait()
                wake.clear()
                batch, slots, sent = self._batch, self._slots, self._batch_sent
                self._batch, self._slots, self._batch_sent = [], [], None
                if sent is None:
                    continue
                try:
                    moved = await self._write_batch(conns, list(zip(slots, batch, strict=True)))
                    if moved:  # once more, after reloading the slot map
                        assert self._cluster is not None
                        with anyio.fail_after(self.timeout):
                            await self._cluster.nodes_manager.initialize()
                        assert self._refresh is not None
                        self._refresh.set()  # the subscriptions move too
                        await self._write_batch(conns, moved)
                except Exception as exc:  # the writer must go on: never raise
                    self._publish_failed(exc)
                finally:
                    sent.set()
        finally:
            with anyio.CancelScope(shield=True):
                for conn in conns.values():
                    await conn.disconnect(nowait=True)

    def _publish_failed(self, exc: BaseException) -> None:
        if not self._publish_failing:
            self._publish_failing = True
            logger.warning(
                "RedisClusterBroker cannot publish to %s (%s); only local members receive "
                "those messages until it is back",
                self.url,
                exc,
            )

    async def _write_batch(
        self, conns: dict[str, AbstractConnection], batch: list[tuple[int, bytes]]
    ) -> list[tuple[int, bytes]]:
        """One round trip per node for `batch`; returns the commands a node answered MOVED."""
        by_node: dict[str, tuple[ClusterNode, list[tuple[int, bytes]]]] = {}
        for item in batch:
            node = self._owner(item[0])
            by_node.setdefault(node.name, (node, []))[1].append(item)
        written: list[tuple[AbstractConnection, list[tuple[int, bytes]]]] = []
        failed: Exception | None = None
        moved: list[tuple[int, bytes]] = []
        with anyio.fail_after(self.timeout):  # one deadline for the whole round trip
            for name, (node, items) in by_node.items():
                conn = conns.get(name)
                try:
                    if conn is None:
                        kwargs = {**node.connection_kwargs, "host": node.host, "port": node.port}
                        conn = conns[name] = Connection(**kwargs)
                        await conn.connect()
                    await conn.send_packed_command([c for _, c in items], check_health=False)
                    written.append((conn, items))
                except _REDIS_DOWN as exc:
                    failed = exc
                    if conns.pop(name, None) is not None:
                        await conn.disconnect(nowait=True)  # type: ignore[union-attr]
            for conn, items in written:
                try:
                    for item in items:
                        try:
                            await conn.read_response(timeout=math.inf)
                        except (MovedError, AskError):
                            moved.append(item)
                        except ResponseError as exc:  # e.g. NOPERM from an ACL
                            failed = exc
                except _REDIS_DOWN as exc:
                    failed = exc
                    conns.pop(next(n for n, c in conns.items() if c is conn), None)
                    await conn.disconnect(nowait=True)
        if failed is not None:
            assert self._refresh is not None
            self._refresh.set()
            self._publish_failed(failed)
        elif self._publish_failing and not moved:
            self._publish_failing = False
            logger.info("RedisClusterBroker publishing to %s again", self.url)
        return moved
