"""Script calls in a blocking cluster pipeline are routed by their declared keys.

redis-py's blocking cluster pipeline asks the server for the keys of a command
that its policy table does not know (``COMMAND GETKEYS``, a round trip to its
default node per script call); the store names the node of the call's keys.
"""

from __future__ import annotations

import pytest
import redis

from taskstore_redis._redis.routing import pipeline_route

from .redis_monitor import monitored

SCRIPT = "return redis.call('EXISTS', KEYS[1])"


def getkeys_sent(cluster_url: str, routed: bool) -> int:
    """How many COMMAND GETKEYS the default node sees for a pipeline of two script calls."""
    with redis.RedisCluster.from_url(cluster_url) as client:
        sha = client.script_load(SCRIPT)
        default = client.get_default_node()
        # two keys that the default node serves, so the pipeline goes there only
        keys = [f"routing-{n}" for n in range(2000)]
        mine = [key for key in keys if client.get_node_from_key(key) == default][:2]
        with monitored(f"redis://{default.host}:{default.port}") as log:
            with client.pipeline(transaction=False) as pipe:
                for key in mine:
                    args = ("EVALSHA", sha, 1, key)  # as the store sends it
                    pipe.execute_command(*args, **(pipeline_route(client, args) if routed else {}))
                assert pipe.execute() == [0, 0]
            commands = log.commands
    assert commands.count("EVALSHA") == 2, commands
    return commands.count("COMMAND GETKEYS")


@pytest.mark.cluster
def test_the_store_routes_pipelined_script_calls_without_asking_the_server(
    cluster_url: str,
) -> None:
    assert getkeys_sent(cluster_url, routed=True) == 0


@pytest.mark.cluster
def test_without_the_store_policy_redis_py_asks_the_server_for_the_keys(cluster_url: str) -> None:
    # what the test above guards against (if a redis-py release fixes this, this test says so)
    assert getkeys_sent(cluster_url, routed=False) == 2
