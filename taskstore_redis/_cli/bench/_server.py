"""Plain redis-py access to the server under test: its mode, its memory, cleaning up.

The benchmark only ever deletes keys under its own key prefix; it never flushes
a database, so it is safe to point at a Redis that holds other data (whose own
traffic will, of course, disturb the figures).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from ..._redis.keys import KeySchema
from ..._redis.scripts import ALL_SCRIPTS

_TIMEOUTS: dict[str, Any] = {"socket_timeout": 30.0, "socket_connect_timeout": 5.0}
_DELETE_BATCH = 500
_DELETE_SECONDS = 300.0


@dataclass(frozen=True)
class Server:
    """A Redis deployment under test: standalone or cluster, and its primaries."""

    url: str
    cluster: bool
    version: str
    primaries: tuple[tuple[str, int], ...]

    @property
    def mode(self) -> str:
        """``standalone`` or ``cluster``."""
        return "cluster" if self.cluster else "standalone"

    def as_json(self) -> dict[str, object]:
        """The deployment as plain JSON (the URL is left out: it may hold a password)."""
        return {"mode": self.mode, "redis_version": self.version, "primaries": len(self.primaries)}


def describe(url: str) -> Server:
    """Ask the server at ``url`` for its version and whether it is part of a cluster."""
    with redis.Redis.from_url(url, **_TIMEOUTS) as client:
        version = str(client.info("server").get("redis_version", "?"))
        cluster = bool(client.info("cluster").get("cluster_enabled"))
    if not cluster:
        return Server(url=url, cluster=False, version=version, primaries=())
    with redis.RedisCluster.from_url(url, **_TIMEOUTS) as cluster_client:
        nodes = tuple((node.host, node.port) for node in cluster_client.get_primaries())
    return Server(url=url, cluster=True, version=version, primaries=nodes)


@contextmanager
def primary_clients(server: Server) -> Iterator[list[redis.Redis]]:
    """A plain client per primary (the URL's server itself when standalone)."""
    if not server.cluster:
        clients = [redis.Redis.from_url(server.url, **_TIMEOUTS)]
    else:
        clients = [
            redis.Redis(host=host, port=port, **_TIMEOUTS) for host, port in server.primaries
        ]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def load_scripts(server: Server) -> None:
    """``SCRIPT LOAD`` every script of the store on every primary."""
    with primary_clients(server) as clients:
        for client in clients:
            for script in ALL_SCRIPTS:
                client.script_load(script.source)


def used_memory(server: Server) -> int:
    """``used_memory`` of INFO, summed over the primaries."""
    with primary_clients(server) as clients:
        return sum(int(client.info("memory")["used_memory"]) for client in clients)


def memory_usage(server: Server, keys: list[str]) -> list[int]:
    """``MEMORY USAGE <key> SAMPLES 0`` (exact) of each key; 0 for a missing key."""
    client: Any
    if server.cluster:
        client = redis.RedisCluster.from_url(server.url, **_TIMEOUTS)
    else:
        client = redis.Redis.from_url(server.url, **_TIMEOUTS)
    with client:
        return [int(client.memory_usage(key, samples=0) or 0) for key in keys]


def delete_prefix(server: Server, prefix: str) -> int:
    """Delete every key of the store prefix ``prefix`` (``{prefix:*``); return the count.

    One key per ``DEL`` (keys of a batch may lie in different slots of a cluster
    node), pipelined; bounded in time.
    """
    deadline = time.monotonic() + _DELETE_SECONDS
    deleted = 0
    with primary_clients(server) as clients:
        for client in clients:
            batch: list[bytes] = []
            for key in client.scan_iter(match=KeySchema(prefix).pattern(), count=1000):
                batch.append(key)
                if len(batch) >= _DELETE_BATCH:
                    deleted += _delete(client, batch)
                    batch = []
                if time.monotonic() > deadline:
                    break
            deleted += _delete(client, batch)
    return deleted


def _delete(client: redis.Redis, keys: list[bytes]) -> int:
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.delete(key)
    return sum(int(count) for count in pipe.execute())
