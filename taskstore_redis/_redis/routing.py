"""How a script call is routed inside a Redis Cluster pipeline.

The store names the node itself: the one serving the script's first declared key
(every key of a call shares one hash tag), so routing never depends on how a
redis-py release finds the keys of a script call. (redis-py 8.0 and 8.1's blocking
cluster pipeline asked the server, ``COMMAND GETKEYS``: one more round trip to its
default node for every script call in a pipeline; 8.2 no longer does for
script calls.) On a redirection redis-py retries the call without this hint and
routes it as usual.
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
