"""Closing a redis-py client so that no socket is left to the garbage collector.

``redis.RedisCluster.close()`` closes each node's client, but in redis-py 8.0 and
8.1 that leaves the nodes' pooled connections open until garbage collection finds
them, and then Python reports each one as an unclosed socket (a ``ResourceWarning``;
an error, and a failed test run, under ``filterwarnings = error``). After closing
the client the store therefore disconnects every node's pool itself: the nodes it
knows now and the startup nodes it was given. Disconnecting twice is harmless.

The async clients need nothing more: ``aclose()`` disconnects every node.
"""

from __future__ import annotations

from typing import Any

import redis


def disconnect_cluster_nodes(client: object) -> None:
    """Disconnect every pooled connection of a blocking cluster client's nodes."""
    if not isinstance(client, redis.RedisCluster):
        return
    untyped: Any = client  # redis-py leaves the node manager untyped
    manager = untyped.nodes_manager
    if manager is None:
        return
    nodes = [*manager.startup_nodes.values(), *manager.nodes_cache.values()]
    for node in nodes:
        node_client = getattr(node, "redis_connection", None)
        if node_client is not None:
            node_client.connection_pool.disconnect()
