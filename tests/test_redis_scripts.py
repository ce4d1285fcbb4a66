"""Each Lua script, called directly with crafted keys and arguments on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

from taskstore_redis._core.backend_types import TaskKey
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import (
    ALL_SCRIPTS,
    COMPARE_AND_SET,
    CREATE,
    LIST_PAGE,
    PURGE_EXPIRED,
)

pytestmark = pytest.mark.redis

NOW = 1_800_000_000_000
HOUR = 3_600_000


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


@pytest.fixture
def keys() -> KeySchema:
    return KeySchema(prefix=f"s{uuid.uuid4().hex[:10]}", shards=4)


def snapshot(client: redis.Redis, keys: KeySchema) -> dict[bytes, object]:
    """Every key of this test's prefix with its full contents."""
    found: dict[bytes, object] = {}
    for key in client.scan_iter(match=f"{{{keys.prefix}:*"):
        kind = client.type(key)
        if kind == b"hash":
            found[key] = client.hgetall(key)
        elif kind == b"zset":
            found[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            found[key] = kind
    return found


def create(
    client: redis.Redis,
    keys: KeySchema,
    task: TaskKey,
    *,
    created: int = NOW,
    expires: int | None = NOW + HOUR,
    purge: int | None = NOW + 2 * HOUR,
    max_live: int | None = None,
    now: int = NOW,
    token: str = "aa01",
    data: bytes = b'{"x":1}',
) -> int:
    result = client.eval(
        CREATE.source,
        4,
        keys.task_key(task),
        keys.index_key(task.owner_id),
        keys.expiry_key(task.owner_id),
        keys.due_key(keys.shard_of(task.owner_id)),
        data,
        keys.index_member(task, created),
        "" if expires is None else expires,
        "" if purge is None else purge,
        "" if max_live is None else max_live,
        now,
        keys.due_member(task.owner_id),
        8,
        token,
    )
    return int(result)


def cas(
    client: redis.Redis, keys: KeySchema, task: TaskKey, expected: int, data: bytes, token: str
) -> list[object]:
    reply = client.eval(COMPARE_AND_SET.source, 1, keys.task_key(task), expected, data, token)
    assert isinstance(reply, list)
    return reply


def test_every_script_declares_its_flags_and_only_the_list_is_read_only() -> None:
    for script in ALL_SCRIPTS:
        first_line = script.source.splitlines()[0]
        assert first_line.startswith("#!lua flags=")
        assert ("no-writes" in first_line) == (script is LIST_PAGE)


def test_the_scripts_ship_as_lua_files_at_the_top_of_the_repository() -> None:
    top = Path(__file__).resolve().parent.parent / "lua"
    for script in ALL_SCRIPTS:
        assert (top / f"{script.name}.lua").read_text(encoding="utf-8") == script.source


def test_create_writes_the_hash_the_indexes_and_the_purge_time(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task) == 1
    stored = client.hgetall(keys.task_key(task))
    assert stored == {b"v": b"1", b"d": b'{"x":1}', b"e": str(NOW + HOUR).encode(), b"w": b"aa01:1"}
    assert client.pexpiretime(keys.task_key(task)) == NOW + 2 * HOUR
    member = keys.index_member(task, NOW).encode()
    assert client.zrange(keys.index_key("alice"), 0, -1) == [member]
    assert client.zscore(keys.expiry_key("alice"), member) == NOW + HOUR
    assert client.zscore(keys.due_key(keys.shard_of("alice")), keys.due_member("alice")) == (
        NOW + HOUR
    )


def test_create_of_a_task_without_ttl_scores_it_infinite_and_sets_no_expiry(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "forever")
    assert create(client, keys, task, expires=None, purge=None) == 1
    assert client.pttl(keys.task_key(task)) == -1
    assert client.zscore(keys.expiry_key("alice"), keys.index_member(task, NOW)) == float("inf")
    assert client.zcard(keys.due_key(keys.shard_of("alice"))) == 0


def test_create_over_quota_writes_nothing(client: redis.Redis, keys: KeySchema) -> None:
    for n in range(3):
        assert create(client, keys, TaskKey("alice", f"t{n}"), max_live=3) == 1
    before = snapshot(client, keys)
    assert create(client, keys, TaskKey("alice", "t3"), max_live=3) == 0
    assert snapshot(client, keys) == before


def test_create_quota_counts_only_tasks_that_have_not_expired(
    client: redis.Redis, keys: KeySchema
) -> None:
    assert create(client, keys, TaskKey("alice", "old"), expires=NOW - 1, purge=NOW + HOUR) == 1
    assert create(client, keys, TaskKey("alice", "new"), max_live=1) == 1
    assert create(client, keys, TaskKey("alice", "newer"), max_live=1) == 0


def test_create_of_an_existing_key_writes_nothing(client: redis.Redis, keys: KeySchema) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, token="cc01") == 1
    before = snapshot(client, keys)
    assert create(client, keys, task, token="cc02", data=b"{}") == -1
    assert snapshot(client, keys) == before


def test_create_resent_after_a_lost_reply_reports_success_without_writing_again(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, token="dd01") == 1
    before = snapshot(client, keys)
    assert create(client, keys, task, token="dd01") == 1
    assert snapshot(client, keys) == before


def test_create_prunes_index_entries_of_tasks_redis_already_removed(
    client: redis.Redis, keys: KeySchema
) -> None:
    gone = TaskKey("alice", "gone")
    assert create(client, keys, gone, expires=NOW - 10, purge=NOW + HOUR) == 1
    client.delete(keys.task_key(gone))  # as Redis does at the purge time
    assert create(client, keys, TaskKey("alice", "fresh")) == 1
    members = client.zrange(keys.index_key("alice"), 0, -1)
    assert members == [keys.index_member(TaskKey("alice", "fresh"), NOW).encode()]
    assert client.zcard(keys.expiry_key("alice")) == 1


def test_compare_and_set_applies_on_the_expected_version(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    assert cas(client, keys, task, 1, b'{"x":2}', "bb01") == [1, 2]
    assert client.hmget(keys.task_key(task), "v", "d") == [b"2", b'{"x":2}']


def test_compare_and_set_conflict_returns_the_current_version_and_data(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    cas(client, keys, task, 1, b'{"x":2}', "bb01")
    assert cas(client, keys, task, 1, b'{"x":3}', "bb02") == [-1, 2, b'{"x":2}']
    assert client.hmget(keys.task_key(task), "v", "d") == [b"2", b'{"x":2}']


def test_compare_and_set_of_a_missing_task_writes_nothing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "nope")
    assert cas(client, keys, task, 1, b"{}", "bb01") == [0]
    assert client.exists(keys.task_key(task)) == 0


def test_compare_and_set_resent_after_a_lost_reply_is_applied_once(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    assert cas(client, keys, task, 1, b'{"x":2}', "bb01") == [1, 2]
    assert cas(client, keys, task, 1, b'{"x":2}', "bb01") == [1, 2]
    assert client.hget(keys.task_key(task), "v") == b"2"


def test_compare_and_set_resent_after_other_writes_reports_the_version_it_made(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    assert cas(client, keys, task, 1, b'{"mine":1}', "bb01") == [1, 2]
    assert cas(client, keys, task, 2, b'{"theirs":1}', "cc01") == [1, 3]
    assert cas(client, keys, task, 1, b'{"mine":1}', "bb01") == [1, 2]
    assert client.hmget(keys.task_key(task), "v", "d") == [b"3", b'{"theirs":1}']


def test_compare_and_set_remembers_the_tokens_of_the_last_six_writes_only(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    for n in range(7):
        assert cas(client, keys, task, n + 1, b"{}", f"f{n:03x}") == [1, n + 2]
    history = client.hget(keys.task_key(task), "w")
    assert history == b" ".join(f"f{n:03x}:{n + 2}".encode() for n in range(6, 0, -1))
    assert cas(client, keys, task, 1, b"{}", "f000") == [-1, 8, b"{}"]


def test_create_resent_after_a_later_update_still_reports_success(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, token="dd01") == 1
    cas(client, keys, task, 1, b"{}", "dd02")
    assert create(client, keys, task, token="dd01") == 1
    assert client.zcard(keys.index_key("alice")) == 1


def test_compare_and_set_keeps_the_purge_time(client: redis.Redis, keys: KeySchema) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    cas(client, keys, task, 1, b"{}", "bb01")
    assert client.pexpiretime(keys.task_key(task)) == NOW + 2 * HOUR


def list_page(
    client: redis.Redis, keys: KeySchema, owner: str, bound: str, limit: int, budget: int = 100
) -> tuple[list[object], str]:
    reply = client.eval(LIST_PAGE.source, 1, keys.index_key(owner), bound, limit, budget)
    assert isinstance(reply, list)
    *records, last = reply
    return records, last.decode()


def test_list_page_returns_newest_first_and_where_to_go_on(
    client: redis.Redis, keys: KeySchema
) -> None:
    for n in range(5):
        create(client, keys, TaskKey("alice", f"t{n}"), created=NOW + n, data=f'"{n}"'.encode())
    records, last = list_page(client, keys, "alice", "+", 2)
    assert records == [1, b'"4"', 1, b'"3"']
    assert last == keys.index_member(TaskKey("alice", "t3"), NOW + 3)
    records, last = list_page(client, keys, "alice", "(" + last, 3)
    assert records == [1, b'"2"', 1, b'"1"', 1, b'"0"']
    assert last == ""


def test_list_page_skips_entries_of_vanished_tasks(client: redis.Redis, keys: KeySchema) -> None:
    for n in range(4):
        create(client, keys, TaskKey("alice", f"t{n}"), created=NOW + n, data=f'"{n}"'.encode())
    client.delete(keys.task_key(TaskKey("alice", "t2")), keys.task_key(TaskKey("alice", "t3")))
    records, last = list_page(client, keys, "alice", "+", 2)
    assert records == [1, b'"1"', 1, b'"0"']
    assert last == ""


def test_list_page_stops_at_its_visit_budget_and_says_where(
    client: redis.Redis, keys: KeySchema
) -> None:
    for n in range(6):
        create(client, keys, TaskKey("alice", f"t{n}"), created=NOW + n)
        if n >= 2:
            client.delete(keys.task_key(TaskKey("alice", f"t{n}")))
    records, last = list_page(client, keys, "alice", "+", 2, budget=3)
    assert records == []
    assert last == keys.index_member(TaskKey("alice", "t3"), NOW + 3)


def purge(client: redis.Redis, keys: KeySchema, shard: int, now: int, batch: int) -> list[int]:
    reply = client.eval(PURGE_EXPIRED.source, 1, keys.due_key(shard), now, batch)
    assert isinstance(reply, list)
    return [int(x) for x in reply]


def test_purge_deletes_expired_tasks_and_their_index_entries_only(
    client: redis.Redis, keys: KeySchema
) -> None:
    create(client, keys, TaskKey("alice", "old"), expires=NOW + 10)
    create(client, keys, TaskKey("alice", "young"), expires=NOW + HOUR)
    create(client, keys, TaskKey("alice", "forever"), expires=None, purge=None)
    shard = keys.shard_of("alice")
    assert purge(client, keys, shard, NOW + 20, 100) == [1, 0]
    assert client.exists(keys.task_key(TaskKey("alice", "old"))) == 0
    assert client.zcard(keys.index_key("alice")) == 2
    assert client.zcard(keys.expiry_key("alice")) == 2
    assert client.zscore(keys.due_key(shard), keys.due_member("alice")) == NOW + HOUR


def test_purge_works_in_batches_and_reports_remaining_work(
    client: redis.Redis, keys: KeySchema
) -> None:
    for n in range(5):
        create(client, keys, TaskKey("alice", f"t{n}"), expires=NOW + n)
    shard = keys.shard_of("alice")
    assert purge(client, keys, shard, NOW + 100, 2) == [2, 1]
    assert purge(client, keys, shard, NOW + 100, 2) == [2, 1]
    assert purge(client, keys, shard, NOW + 100, 2) == [1, 0]
    assert client.zcard(keys.due_key(shard)) == 0
    assert client.zcard(keys.index_key("alice")) == 0


def test_purge_forgets_the_owner_once_only_unexpiring_tasks_remain(
    client: redis.Redis, keys: KeySchema
) -> None:
    create(client, keys, TaskKey("alice", "old"), expires=NOW + 10)
    create(client, keys, TaskKey("alice", "forever"), expires=None, purge=None)
    shard = keys.shard_of("alice")
    assert purge(client, keys, shard, NOW + 20, 100) == [1, 0]
    assert client.zcard(keys.due_key(shard)) == 0


@pytest.mark.cluster
def test_a_script_given_keys_of_two_slots_is_refused_by_the_server(cluster_url: str) -> None:
    # A plain connection to one node, so the server, not redis-py, judges the keys.
    with (
        redis.Redis.from_url(cluster_url) as node,
        pytest.raises(redis.exceptions.ResponseError, match="hash to the same slot"),
    ):
        node.eval(COMPARE_AND_SET.source, 2, "{a}:one", "{b}:two", 1, b"{}", "ee01")


@pytest.mark.cluster
def test_a_task_key_read_from_an_index_must_live_in_the_index_slot(cluster_url: str) -> None:
    # The list script reads task keys stored in the index; the server refuses one that
    # would lie in another slot, so a corrupted index can never reach another shard.
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        index = "{evil}:i:owner"
        cluster.zadd(index, {"000000000000001:{other}:t:owner:task": 0})
        with pytest.raises(redis.exceptions.ResponseError, match=r"same slot|non local key"):
            cluster.eval(LIST_PAGE.source, 1, index, "+", 10, 100)
        cluster.delete(index)
