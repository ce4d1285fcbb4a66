"""The stored format is versioned and tolerant: the basis of a rolling upgrade.

A record written by a newer minor format (with fields this process does not know)
reads back; a variable merge, which writes only its own fields, keeps what it does
not know; a status change, which would rewrite the core record and drop the unknown
fields, is refused with ``UnsupportedFormat`` naming both versions, and writes nothing.
Records of another major format (or of format 1, which had no version) are refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

import taskstore_redis as ts
from taskstore_redis import TaskStatus, UnsupportedFormat
from taskstore_redis._core.model import FORMAT
from taskstore_redis.backend import TaskKey

pytestmark = pytest.mark.redis

OWNER = "upgrade-owner"
METHOD = "tools/call"


@pytest.fixture
def store(redis_url: str, key_prefix: str) -> Iterator[ts.GenericTaskStore]:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as opened:
        yield opened


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def task_key(store: ts.GenericTaskStore, task_id: str) -> str:
    backend = store.backend
    assert isinstance(backend, ts.RedisBackend)
    return backend.keys.task_key(TaskKey(OWNER, task_id))


def as_newer_minor(client: redis.Redis, key: str) -> None:
    """Rewrite a stored task as a process of format 2.7 might have written it."""
    core = json.loads(client.hget(key, "d") or b"[]")
    core += [None] * (7 - len(core))  # the trailing nulls left out
    core.append({"added": "in 2.7"})  # an element of the core record this process does not know
    client.hset(key, mapping={"f": "2.7", "d": json.dumps(core), "zz": "a new hash field"})


def test_a_newer_minor_record_with_unknown_fields_reads_back(
    store: ts.GenericTaskStore, client: redis.Redis
) -> None:
    created = store.create(METHOD, owner_id=OWNER)
    task_id = created.task.task_id
    store.set_variables(task_id, {"a": 1}, owner_id=OWNER)
    before = store.get(task_id, owner_id=OWNER)
    as_newer_minor(client, task_key(store, task_id))
    assert store.get(task_id, owner_id=OWNER) == before
    assert store.list(owner_id=OWNER).tasks == [before]


def test_a_merge_into_a_newer_minor_record_keeps_what_it_does_not_know(
    store: ts.GenericTaskStore, client: redis.Redis
) -> None:
    task_id = store.create(METHOD, owner_id=OWNER).task.task_id
    key = task_key(store, task_id)
    as_newer_minor(client, key)
    merged = store.set_variables(task_id, {"b": [2]}, owner_id=OWNER)
    assert merged.variables == {"b": [2]}
    assert client.hget(key, "zz") == b"a new hash field"
    assert client.hget(key, "f") == b"2.7"
    assert json.loads(client.hget(key, "d") or b"[]")[7] == {"added": "in 2.7"}


def test_a_status_change_of_a_newer_minor_record_is_refused_and_writes_nothing(
    store: ts.GenericTaskStore, client: redis.Redis
) -> None:
    task_id = store.create(METHOD, owner_id=OWNER).task.task_id
    key = task_key(store, task_id)
    as_newer_minor(client, key)
    before = client.hgetall(key)
    changes: list[Callable[[], object]] = [
        lambda: store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER),
        lambda: store.complete_with_result(task_id, "completed", None, 1, owner_id=OWNER),
        lambda: store.cancel(task_id, owner_id=OWNER),
    ]
    for change in changes:
        with pytest.raises(UnsupportedFormat) as raised:
            change()
        assert (raised.value.stored, raised.value.supported) == ("2.7", FORMAT)
        assert "2.7" in str(raised.value)
        assert FORMAT in str(raised.value)
        assert isinstance(raised.value, ts.TaskStoreError)
    assert client.hgetall(key) == before


@pytest.mark.parametrize("stored", ["3.0", None])
def test_a_record_of_another_major_format_is_refused_everywhere(
    store: ts.GenericTaskStore, client: redis.Redis, stored: str | None
) -> None:
    task_id = store.create(METHOD, owner_id=OWNER).task.task_id
    key = task_key(store, task_id)
    if stored is None:
        client.hdel(key, "f")  # as format 1 stored tasks: without a version
    else:
        client.hset(key, "f", stored)
    before = client.hgetall(key)
    with pytest.raises(UnsupportedFormat):
        store.get(task_id, owner_id=OWNER)
    with pytest.raises(UnsupportedFormat):
        store.set_variables(task_id, {"a": 1}, owner_id=OWNER)
    with pytest.raises(UnsupportedFormat):
        store.cancel(task_id, owner_id=OWNER)
    assert client.hgetall(key) == before
