"""On Redis Cluster the store routes the script calls of its pipelines itself.

A store operation that runs one script per shard (``queue_stats``, ``queue_leases``)
sends them in one pipeline, one round trip per node. The store names the node of
each call (the one serving the call's first key, see ``taskstore_redis._redis.routing``),
so no node is asked for the keys of a command (``COMMAND GETKEYS``) and every call
goes straight to its node, with no redirection and no resend.

Upstream, for the record (not asserted: it changes between releases): redis-py 8.0
and 8.1's blocking cluster pipeline sent ``COMMAND GETKEYS`` to its default node for
every ``EVALSHA`` of a pipeline when not told the node; 8.2 no longer does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis
import redis.crc

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa

from .redis_monitor import CommandLog

QUEUE = "routing"


@contextlib.contextmanager
def every_primary_monitored(cluster_url: str) -> Iterator[dict[str, CommandLog]]:
    """A command log per primary of the cluster, by ``host:port``."""
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        addresses = [f"{node.host}:{node.port}" for node in cluster.get_primaries()]
    with contextlib.ExitStack() as stack:
        yield {
            address: stack.enter_context(CommandLog(f"redis://{address}")) for address in addresses
        }


def slot_owners(cluster_url: str) -> dict[int, str]:
    """``host:port`` of the primary serving each slot."""
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        return {
            slot: f"{node.host}:{node.port}"
            for slot in range(16384)
            if (node := cluster.nodes_manager.get_node_from_slot(slot)) is not None
        }


def assert_routed_by_the_store(
    cluster_url: str, logs: dict[str, CommandLog], shards: int, operations: int
) -> None:
    """Each node saw only the script calls of its own slots, one per shard and operation,
    and nobody asked for the keys of a command."""
    owners = slot_owners(cluster_url)
    calls = 0
    for address, log in logs.items():
        lines = log.lines
        assert "COMMAND GETKEYS" not in log.commands, (address, lines)
        for line in lines:
            words = [word.strip('"') for word in line.split(" ")]
            if words[0].upper() != "EVALSHA":
                continue
            calls += 1
            key = words[3]
            assert owners[redis.crc.key_slot(key.encode())] == address, (address, line)
    # no call was sent twice (a redirection would resend it to another node)
    assert calls == shards * operations


@pytest.mark.cluster
def test_the_blocking_store_sends_its_pipelined_script_calls_to_their_nodes(
    cluster_url: str, key_prefix: str
) -> None:
    with ts.GenericTaskStore.from_url(cluster_url, prefix=key_prefix) as store:
        backend = store.backend
        assert isinstance(backend, ts.RedisBackend)
        store.queue_stats(QUEUE)  # connected, scripts loaded
        with every_primary_monitored(cluster_url) as logs:
            assert store.queue_stats(QUEUE).ready == 0
            assert store.queue_leases(QUEUE) == []
            assert_routed_by_the_store(cluster_url, logs, backend.keys.shards, operations=2)


@pytest.mark.cluster
@pytest.mark.anyio
async def test_the_async_store_sends_its_pipelined_script_calls_to_their_nodes(
    cluster_url: str, key_prefix: str
) -> None:
    async with tsa.GenericTaskStore.from_url(cluster_url, prefix=key_prefix) as store:
        backend = store.backend
        assert isinstance(backend, tsa.RedisBackend)
        await store.queue_stats(QUEUE)  # connected, scripts loaded
        with every_primary_monitored(cluster_url) as logs:
            assert (await store.queue_stats(QUEUE)).ready == 0
            assert await store.queue_leases(QUEUE) == []
            assert_routed_by_the_store(cluster_url, logs, backend.keys.shards, operations=2)
