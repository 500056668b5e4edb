"""Groups and pub/sub: brokers that fan a published message out to members.

`MemoryBroker` (the default) works within one process; `RedisBroker` spans
processes and machines and needs the `redis` extra (`pip install tether[redis]`),
imported only when `RedisBroker` is first used; `RedisClusterBroker` does the same
on a Redis Cluster, over sharded pub/sub. `OutboundQueue` is the bounded
per-connection buffer a member wraps around its ASGI `send`.

With `history=GroupHistory(...)` a broker keeps each group's recent messages:
every message gets a `Position`, and `join(group, since=position)` replays what
a reconnecting client missed (`Recovery`); `broker.history()` reads it
(`HistoryPage` of `HistoryEntry`).

Presence (`track`, `presence`, `presence_count`, `watch_presence`, see
`tether.brokers.presence`) says who is in a group: exactly, in process, with
`MemoryBroker`; in Redis, across processes, with a heartbeat that removes a
dead process's members, with `RedisBroker`, and on a Redis Cluster with
`RedisClusterBroker` (each group's presence in its own slot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tether.brokers.base import Broker, Member
from tether.brokers.history import GroupHistory
from tether.brokers.memory import MemoryBroker
from tether.brokers.outbound import OutboundQueue
from tether.brokers.positions import HistoryEntry, HistoryPage, Position, Recovery
from tether.frames import encode_frame

if TYPE_CHECKING:
    from tether.brokers.redis import RedisBroker
    from tether.brokers.redis_cluster import RedisClusterBroker

__all__ = [
    "Broker",
    "GroupHistory",
    "HistoryEntry",
    "HistoryPage",
    "Member",
    "MemoryBroker",
    "OutboundQueue",
    "Position",
    "Recovery",
    "RedisBroker",
    "RedisClusterBroker",
    "encode_frame",
]


def __getattr__(name: str) -> Any:
    if name in ("RedisBroker", "RedisClusterBroker"):
        try:
            from tether.brokers import redis, redis_cluster
        except ImportError as exc:
            raise ImportError(
                f"{name} needs the redis package: pip install 'tether[redis]'"
            ) from exc
        return redis.RedisBroker if name == "RedisBroker" else redis_cluster.RedisClusterBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
