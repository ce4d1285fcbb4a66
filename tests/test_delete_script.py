"""``lua/delete.lua`` called directly with crafted keys and arguments on a real Redis."""

from __future__ import annotations

from typing import Any

import redis

from taskstore_redis._redis.contract import Code, delete_call
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import DELETE
from taskstore_redis.backend import TaskKey, TaskRemoval

from .test_redis_scripts import NOW, client, create, keys, pytestmark, snapshot

__all__ = ["client", "keys", "pytestmark"]  # the fixtures and marker this module reuses


def delete(
    client: redis.Redis, keys: KeySchema, task: TaskKey, data: bytes, created: int = NOW
) -> Code:
    removal = TaskRemoval(key=task, created_at_ms=created, data=data)
    script_keys, args = delete_call(keys, removal).keys_and_args()
    return Code(client.eval(DELETE.source, len(script_keys), *script_keys, *args))


def test_delete_removes_the_hash_and_both_index_entries_and_nothing_else(
    client: redis.Redis, keys: KeySchema
) -> None:
    gone, kept = TaskKey("alice", "gone"), TaskKey("alice", "kept")
    assert create(client, keys, kept, token="ee01") is Code.OK
    before = snapshot(client, keys)
    assert create(client, keys, gone, created=NOW + 1, token="ee02", data=b'{"y":2}') is Code.OK
    assert delete(client, keys, gone, b'{"y":2}', created=NOW + 1) is Code.OK
    assert client.exists(keys.task_key(gone)) == 0
    assert snapshot(client, keys) == before


def test_delete_of_a_task_whose_core_is_another_touches_nothing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, data=b'{"x":1}') is Code.OK
    before = snapshot(client, keys)
    assert delete(client, keys, task, b'{"x":2}') is Code.CONFLICT
    assert snapshot(client, keys) == before


def test_delete_of_a_missing_task_touches_nothing(client: redis.Redis, keys: KeySchema) -> None:
    assert create(client, keys, TaskKey("alice", "other")) is Code.OK
    before = snapshot(client, keys)
    assert delete(client, keys, TaskKey("alice", "missing"), b'{"x":1}') is Code.NOT_FOUND
    assert snapshot(client, keys) == before


def test_delete_tells_the_tasks_waiters_that_it_is_gone(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "watched")
    assert create(client, keys, task) is Code.OK
    untyped: Any = client  # redis-py types pubsub() in some releases only
    with untyped.pubsub() as pubsub:
        pubsub.ssubscribe(keys.channel(task))
        assert pubsub.get_sharded_message(timeout=5)["type"] == "ssubscribe"
        assert delete(client, keys, task, b'{"x":1}') is Code.OK
        message = pubsub.get_sharded_message(timeout=5)
    assert message is not None
    assert message["type"] == "smessage"
    assert message["data"] == b""
