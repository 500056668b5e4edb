"""Moved to `tether.testing.redis`; this name is kept so existing imports keep working."""

from tether.testing.redis import RedisServer, find_redis_server

__all__ = ["RedisServer", "find_redis_server"]
