"""The configuration guard's round trips: each node's eviction policy, once per process.

What is judged and logged is in :mod:`taskstore_redis._redis.guard`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio
import redis.exceptions

from .._core.log import REDIS
from .._redis import guard
from .._redis.errors import map_redis_errors


async def check_server(
    client: redis.asyncio.Redis | redis.asyncio.RedisCluster, *, require_noeviction: bool
) -> None:
    """Read the eviction policy of every node not read yet; refuse if required.

    Standalone: the server; cluster: every primary, one ``INFO memory`` each.
    ``INFO`` refused by an ACL is noted as unreadable (logged, not an error unless
    ``require_noeviction``). A node that cannot be reached stays unchecked until
    the next connection error; it fails the call only with ``require_noeviction``.

    Raises:
        StoreUnavailable: ``require_noeviction`` and a node could not be reached.
        ServerMisconfigured: ``require_noeviction`` and a node is not on ``noeviction``.

    """
    if isinstance(client, redis.asyncio.RedisCluster):
        cluster: Any = client  # the sync client's node methods are untyped
        if not cluster.get_primaries():
            # the async client learns the nodes on first use: initialize it as a whole (not
            # only its node manager, which would leave its command parser unset)
            await cluster.initialize()
        nodes = [node.name for node in cluster.get_primaries()]
        for name in guard.unchecked(nodes):
            info = partial(cluster.info, "memory", target_nodes=cluster.get_node(node_name=name))
            await _read(info, name, require_noeviction)
    else:
        nodes = [guard.standalone_node(client)]
        if guard.unchecked(nodes):
            await _read(partial(client.info, "memory"), nodes[0], require_noeviction)
    if require_noeviction:
        guard.refuse_unless_noeviction(nodes)


async def _read(info: Callable[[], Any], node: str, strict: bool) -> None:
    """Note ``node``'s policy from ``info()``; a refusal notes it unreadable."""
    with map_redis_errors("checking the eviction policy", write=False):
        try:
            guard.note(node, guard.policy_of(await info()))
        except redis.exceptions.NoPermissionError:
            guard.note(node, guard.UNREADABLE)
        except (redis.exceptions.RedisError, OSError) as exc:
            if strict:
                raise
            REDIS.debug("Redis at %s: eviction policy not checked yet (%r)", node, exc)
