"""The configuration guard's round trips: each node's eviction policy, once per process.

What is judged and logged is in :mod:`taskstore_redis._redis.guard`.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.exceptions

from .._redis import guard
from .._redis.errors import map_redis_errors


async def check_server(
    client: redis.asyncio.Redis | redis.asyncio.RedisCluster, *, require_noeviction: bool
) -> None:
    """Read the eviction policy of every node not read yet; refuse if required.

    Standalone: the server; cluster: every primary. ``INFO`` refused by an ACL is
    noted as unreadable (logged, not an error unless ``require_noeviction``).

    Raises:
        StoreUnavailable: the server could not be reached (nothing else was sent).
        ServerMisconfigured: ``require_noeviction`` and a node is not on ``noeviction``.

    """
    with map_redis_errors("checking the eviction policy", write=False):
        if isinstance(client, redis.asyncio.RedisCluster):
            nodes = await _cluster_policies(client)
        else:
            node = guard.standalone_node(client)
            nodes = [node]
            if guard.unchecked(nodes):
                guard.note(node, await _policy(client))
    if require_noeviction:
        guard.refuse_unless_noeviction(nodes)


async def _policy(client: redis.asyncio.Redis) -> str:
    try:
        return guard.policy_of(await client.info("memory"))
    except redis.exceptions.NoPermissionError:
        return guard.UNREADABLE


async def _cluster_policies(cluster: redis.asyncio.RedisCluster) -> list[str]:
    """Note the policy of each primary not read yet; return every primary's name."""
    client: Any = cluster  # the sync client's node methods are untyped
    known = [node.name for node in client.get_primaries()]  # empty before the first command
    ask = guard.unchecked(known)
    if known and not ask:
        return known
    targets: Any = [client.get_node(node_name=name) for name in ask] if known else client.PRIMARIES
    try:
        replies: Any = await client.info("memory", target_nodes=targets)
    except redis.exceptions.NoPermissionError:
        replies = {}
    nodes = [node.name for node in client.get_primaries()]
    asked = ask if known else nodes
    if "maxmemory_policy" in replies:  # a single node asked: its own reply, not one per node
        replies = dict.fromkeys(asked, replies)
    for name in asked:
        reply = replies.get(name)
        guard.note(name, guard.UNREADABLE if reply is None else guard.policy_of(reply))
    return nodes
