"""Fixtures for the broker tests: a real redis-server on a free loopback port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tether.testing.redis import RedisClusterServers, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on a free loopback port for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop and restart it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def persistent_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own that keeps its data when stopped and started again."""
    with RedisServer(persistent=True) as server:
        yield server


@pytest.fixture
def group() -> str:
    """A group name no other test uses, so tests can share one server."""
    return f"room-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def prefix() -> str:
    """A key and channel prefix no other test uses, so tests can share one server or cluster."""
    return f"t{uuid.uuid4().hex[:8]}:"


def _cluster_or_skip() -> RedisClusterServers:
    try:
        return RedisClusterServers()
    except FileNotFoundError as exc:  # no redis-server 7 on this machine
        pytest.skip(f"Redis Cluster tests need redis-server >= 7 (sharded pub/sub): {exc}")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One real 3-master Redis Cluster (redis-server 7+) on loopback for the whole session."""
    with _cluster_or_skip() as cluster:
        yield cluster


@pytest.fixture
def private_redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of the test's own, for tests that stop and restart a node."""
    with _cluster_or_skip() as cluster:
        yield cluster
