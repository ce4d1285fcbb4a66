"""How a script call is routed inside a Redis Cluster pipeline.

redis-py's blocking cluster pipeline (8.x, with command policies) finds the keys
of a command missing from its policy table by asking the server
(``COMMAND GETKEYS``: one more round trip, to its default node, for every script
call in a pipeline), while a single call reads them from the ``EVALSHA``
arguments. The store names the node itself: the one serving the script's first
declared key (every key of a call shares one hash tag). On a redirection redis-py
retries the call without this hint and routes it as usual.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio


def pipeline_route(client: object, args: tuple[Any, ...]) -> dict[str, Any]:
    """The ``target_nodes`` option for a script call in a cluster pipeline, else none."""
    if (
        args[0] == "EVALSHA"
        and int(args[2]) > 0
        and isinstance(client, redis.RedisCluster | redis.asyncio.RedisCluster)
    ):
        return {"target_nodes": client.get_node_from_key(args[3])}
    return {}
