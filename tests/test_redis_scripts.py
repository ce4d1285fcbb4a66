"""Each Lua script, called directly with crafted keys and arguments on a real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

from taskstore_redis._core.model import FORMAT, encode_json, encode_variable_changes
from taskstore_redis._redis.contract import (
    Code,
    compare_and_set_call,
    create_call,
    merge_variables_call,
)
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.replies import page_records
from taskstore_redis._redis.scripts import (
    ALL_SCRIPTS,
    COMPARE_AND_SET,
    CREATE,
    LIST_PAGE,
    MERGE_VARIABLES,
    PURGE_EXPIRED,
    QUEUE_DUE,
    QUEUE_LEASES,
    QUEUE_STATS,
    SCHEDULES_DUE,
)
from taskstore_redis.backend import CoreWrite, NewTask, TaskKey, VariableMerge

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
    new = NewTask(
        key=task,
        format=FORMAT,
        data=data,
        created_at_ms=created,
        expires_at_ms=expires,
        purge_at_ms=purge,
        max_live=max_live,
        now_ms=now,
    )
    script_keys, args = create_call(keys, new, token).keys_and_args()
    return Code(client.eval(CREATE.source, len(script_keys), *script_keys, *args))


def fields(flat: object) -> dict[bytes, bytes]:
    """A flat HGETALL reply of a script as a dict."""
    assert isinstance(flat, list)
    return dict(zip(flat[::2], flat[1::2], strict=True))


def cas(
    client: redis.Redis,
    keys: KeySchema,
    task: TaskKey,
    expected: int,
    data: bytes,
    token: str,
    *,
    terminal: bool = False,
    created: int = NOW,
) -> list[object]:
    """Run compare_and_set.lua; return {status, fields as a dict} (or {0})."""
    write = CoreWrite(
        key=task,
        expected_core_version=expected,
        format=FORMAT,
        data=data,
        created_at_ms=created,
        terminal=terminal,
        now_ms=NOW + 5,
    )
    script_keys, args = compare_and_set_call(keys, write, token).keys_and_args()
    reply = client.eval(COMPARE_AND_SET.source, len(script_keys), *script_keys, *args)
    assert isinstance(reply, list)
    return [Code(reply[0]), *([whole(reply[1], reply[2])] if len(reply) == 3 else [])]


def whole(core: object, joined: object) -> dict[bytes, object]:
    """A task as the scripts return it, as one dict: core fields, and variables decoded."""
    assert isinstance(joined, bytes)
    return {**fields(core), b"variables": json.loads(b"{" + joined + b"}")}


def merge(
    client: redis.Redis,
    keys: KeySchema,
    task: TaskKey,
    variables: dict[str, object],
    token: str = "ab01",
    *,
    limit: int = 1000,
    now: int = NOW + 5,
) -> list[object]:
    """Run merge_variables.lua with the variables' canonical JSON."""
    sets, deletes = encode_variable_changes(variables)
    change = VariableMerge(
        key=task, format_major=2, sets=sets, deletes=deletes, max_bytes=limit, now_ms=now
    )
    script_keys, args = merge_variables_call(keys, change, token).keys_and_args()
    reply = client.eval(MERGE_VARIABLES.source, len(script_keys), *script_keys, *args)
    assert isinstance(reply, list)
    return [Code(reply[0]), *reply[1:]]


def test_every_script_declares_its_flags_and_only_the_reads_are_read_only() -> None:
    for script in ALL_SCRIPTS:
        first_line = script.source.splitlines()[0]
        assert first_line.startswith("#!lua flags=")
        reads = (LIST_PAGE, QUEUE_STATS, QUEUE_DUE, QUEUE_LEASES, SCHEDULES_DUE)
        assert ("no-writes" in first_line) == (script in reads)


def test_the_scripts_ship_as_lua_files_at_the_top_of_the_repository() -> None:
    top = Path(__file__).resolve().parent.parent / "lua"
    for script in ALL_SCRIPTS:
        own = (top / f"{script.name}.lua").read_text(encoding="utf-8")
        first, _, rest = own.partition("\n")
        helpers = [(top / "includes" / f"{name}.lua").read_text() for name in script.includes]
        assert script.source == first + "\n" + "".join(helpers) + rest


def test_create_writes_the_hash_the_indexes_and_the_purge_time(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task) is Code.OK
    stored = client.hgetall(keys.task_key(task))
    assert stored == {
        b"f": FORMAT.encode(),
        b"v": b"1",
        b"k": b"1",
        b"d": b'{"x":1}',
        b"e": str(NOW + HOUR).encode(),
        b"w": b"aa01:1",
    }
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
    assert create(client, keys, task, expires=None, purge=None) is Code.OK
    assert client.pttl(keys.task_key(task)) == -1
    assert client.zscore(keys.expiry_key("alice"), keys.index_member(task, NOW)) == float("inf")
    assert client.zcard(keys.due_key(keys.shard_of("alice"))) == 0


def test_create_over_quota_writes_nothing(client: redis.Redis, keys: KeySchema) -> None:
    for n in range(3):
        assert create(client, keys, TaskKey("alice", f"t{n}"), max_live=3) is Code.OK
    before = snapshot(client, keys)
    assert create(client, keys, TaskKey("alice", "t3"), max_live=3) is Code.OVER_QUOTA
    assert snapshot(client, keys) == before


def test_create_quota_counts_only_tasks_that_have_not_expired(
    client: redis.Redis, keys: KeySchema
) -> None:
    assert (
        create(client, keys, TaskKey("alice", "old"), expires=NOW - 1, purge=NOW + HOUR) is Code.OK
    )
    assert create(client, keys, TaskKey("alice", "new"), max_live=1) is Code.OK
    assert create(client, keys, TaskKey("alice", "newer"), max_live=1) is Code.OVER_QUOTA


def test_create_of_an_existing_key_writes_nothing(client: redis.Redis, keys: KeySchema) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, token="cc01") is Code.OK
    before = snapshot(client, keys)
    assert create(client, keys, task, token="cc02", data=b"{}") is Code.EXISTS
    assert snapshot(client, keys) == before


def test_create_resent_after_a_lost_reply_reports_success_without_writing_again(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, token="dd01") is Code.OK
    before = snapshot(client, keys)
    assert create(client, keys, task, token="dd01") is Code.OK
    assert snapshot(client, keys) == before


def test_create_prunes_index_entries_of_tasks_redis_already_removed(
    client: redis.Redis, keys: KeySchema
) -> None:
    gone = TaskKey("alice", "gone")
    assert create(client, keys, gone, expires=NOW - 10, purge=NOW + HOUR) is Code.OK
    client.delete(keys.task_key(gone))  # as Redis does at the purge time
    assert create(client, keys, TaskKey("alice", "fresh")) is Code.OK
    members = client.zrange(keys.index_key("alice"), 0, -1)
    assert members == [keys.index_member(TaskKey("alice", "fresh"), NOW).encode()]
    assert client.zcard(keys.expiry_key("alice")) == 1


def test_compare_and_set_applies_on_the_expected_core_version(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    status, after = cas(client, keys, task, 1, b'{"x":2}', "bb01")
    assert status is Code.OK
    assert isinstance(after, dict)
    assert (after[b"v"], after[b"k"], after[b"d"], after[b"u"]) == (
        b"2",
        b"2",
        b'{"x":2}',
        str(NOW + 5).encode(),
    )


def test_compare_and_set_conflict_returns_the_current_record(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    cas(client, keys, task, 1, b'{"x":2}', "bb01")
    status, current = cas(client, keys, task, 1, b'{"x":3}', "bb02")
    assert status is Code.CONFLICT
    stored = client.hgetall(keys.task_key(task))
    assert current == {**stored, b"variables": {}}
    assert client.hmget(keys.task_key(task), "v", "d") == [b"2", b'{"x":2}']


def test_compare_and_set_of_a_missing_task_writes_nothing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "nope")
    assert cas(client, keys, task, 1, b"{}", "bb01") == [Code.NOT_FOUND]
    assert client.exists(keys.task_key(task)) == 0


def test_compare_and_set_resent_after_a_lost_reply_is_applied_once(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    assert cas(client, keys, task, 1, b'{"x":2}', "bb01")[0] is Code.OK
    assert cas(client, keys, task, 1, b'{"x":2}', "bb01")[0] is Code.OK
    assert client.hmget(keys.task_key(task), "v", "k") == [b"2", b"2"]


def test_compare_and_set_resent_after_other_writes_reports_applied_without_writing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    assert cas(client, keys, task, 1, b'{"mine":1}', "bb01")[0] is Code.OK
    assert cas(client, keys, task, 2, b'{"theirs":1}', "cc01")[0] is Code.OK
    assert cas(client, keys, task, 1, b'{"mine":1}', "bb01")[0] is Code.OK
    assert client.hmget(keys.task_key(task), "v", "d") == [b"3", b'{"theirs":1}']


def test_tokens_of_the_last_six_writes_only_are_remembered(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    for n in range(7):
        assert cas(client, keys, task, n + 1, b"{}", f"f{n:03x}")[0] is Code.OK
    history = client.hget(keys.task_key(task), "w")
    assert history == b" ".join(f"f{n:03x}:{n + 2}".encode() for n in range(6, 0, -1))
    assert cas(client, keys, task, 1, b"{}", "f000")[0] is Code.CONFLICT


def test_create_resent_after_a_later_update_still_reports_success(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    assert create(client, keys, task, token="dd01") is Code.OK
    cas(client, keys, task, 1, b"{}", "dd02")
    assert create(client, keys, task, token="dd01") is Code.OK
    assert client.zcard(keys.index_key("alice")) == 1


def test_compare_and_set_keeps_the_purge_time(client: redis.Redis, keys: KeySchema) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    cas(client, keys, task, 1, b"{}", "bb01")
    assert client.pexpiretime(keys.task_key(task)) == NOW + 2 * HOUR


def test_a_terminal_write_negates_the_expiry_score_so_the_quota_stops_counting_it(
    client: redis.Redis, keys: KeySchema
) -> None:
    ends = TaskKey("alice", "ends")
    forever = TaskKey("alice", "forever")
    create(client, keys, ends, max_live=2)
    create(client, keys, forever, expires=None, purge=None, max_live=2)
    assert create(client, keys, TaskKey("alice", "third"), max_live=2) is Code.OVER_QUOTA
    assert cas(client, keys, ends, 1, b"{}", "ee01", terminal=True)[0] is Code.OK
    assert cas(client, keys, forever, 1, b"{}", "ee02", terminal=True)[0] is Code.OK
    expiry = keys.expiry_key("alice")
    assert client.zscore(expiry, keys.index_member(ends, NOW)) == -(NOW + HOUR)
    assert client.zscore(expiry, keys.index_member(forever, NOW)) == float("-inf")
    assert create(client, keys, TaskKey("alice", "third"), max_live=2) is Code.OK
    assert create(client, keys, TaskKey("alice", "fourth"), max_live=2) is Code.OK
    assert create(client, keys, TaskKey("alice", "fifth"), max_live=2) is Code.OVER_QUOTA


def test_a_merge_writes_only_its_fields_and_keeps_the_core_version(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    reply = merge(client, keys, task, {"a": 1, "b": [1, 2]})
    assert reply[0] is Code.OK
    after = whole(reply[1], reply[2])
    assert after[b"variables"] == {"a": 1, "b": [1, 2]}
    assert client.hmget(keys.task_key(task), '"a"', '"b"') == [b"1", b"[1,2]"]
    assert (after[b"v"], after[b"k"], after[b"d"]) == (b"2", b"1", b'{"x":1}')
    assert isinstance(after[b"n"], bytes)
    assert int(after[b"n"]) + 1 == len(encode_json({"a": 1, "b": [1, 2]}))
    reply = merge(client, keys, task, {"a": None, "c": "x"}, "ab02")
    after = whole(reply[1], reply[2])
    assert after[b"variables"] == {"b": [1, 2], "c": "x"}
    assert isinstance(after[b"n"], bytes)
    assert int(after[b"n"]) + 1 == len(encode_json({"b": [1, 2], "c": "x"}))
    reply = merge(client, keys, task, {"b": None, "c": None}, "ab03")
    after = whole(reply[1], reply[2])
    assert after[b"variables"] == {}
    assert after[b"n"] == b"0"  # {} is 2 bytes


def test_a_merge_over_the_size_limit_reports_the_exact_size_and_writes_nothing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    merge(client, keys, task, {"a": "x" * 10})
    before = snapshot(client, keys)
    wanted = {"a": "x" * 10, "b": "y" * 20}
    assert merge(client, keys, task, {"b": "y" * 20}, "ab02", limit=30) == [
        Code.TOO_LARGE,
        len(encode_json(wanted)),
    ]
    assert snapshot(client, keys) == before
    assert (
        merge(client, keys, task, {"b": "y" * 20}, "ab03", limit=len(encode_json(wanted)))[0]
        is Code.OK
    )


def test_a_merge_of_an_expired_or_missing_task_writes_nothing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task, expires=NOW + 10)
    before = snapshot(client, keys)
    assert merge(client, keys, task, {"a": 1}, now=NOW + 10) == [Code.EXPIRED]
    assert merge(client, keys, TaskKey("alice", "nope"), {"a": 1}) == [Code.NOT_FOUND]
    assert snapshot(client, keys) == before


def test_a_merge_of_another_major_format_writes_nothing(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    client.hset(keys.task_key(task), "f", "3.1")
    before = snapshot(client, keys)
    assert merge(client, keys, task, {"a": 1}) == [Code.OTHER_FORMAT, b"3.1"]
    assert snapshot(client, keys) == before


def test_a_merge_resent_after_a_lost_reply_is_applied_once(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t1")
    create(client, keys, task)
    assert merge(client, keys, task, {"a": 1}, "ab01")[0] is Code.OK
    merge(client, keys, task, {"a": 2}, "ab02")
    assert merge(client, keys, task, {"a": 1}, "ab01")[0] is Code.OK  # found its token
    assert client.hmget(keys.task_key(task), "v", '"a"') == [b"3", b"2"]


def list_page(
    client: redis.Redis, keys: KeySchema, owner: str, bound: str, limit: int, budget: int = 100
) -> tuple[list[bytes], str]:
    reply = client.eval(
        LIST_PAGE.source, 2, keys.index_key(owner), keys.task_prefix(owner), bound, limit, budget
    )
    assert isinstance(reply, list)
    last = reply.pop()
    records = page_records(reply)
    assert len(records) * 8 == len(reply)  # every task in its eight places
    ids = [record.task_id for record in records]
    datas = [record.data for record in records]
    # every test here stores task "t<n>" with data '"<n>"' (or lists nothing)
    assert ids == [f"t{json.loads(data)}" for data in datas]
    return datas, last.decode()


def test_list_page_returns_newest_first_and_where_to_go_on(
    client: redis.Redis, keys: KeySchema
) -> None:
    for n in range(5):
        create(client, keys, TaskKey("alice", f"t{n}"), created=NOW + n, data=f'"{n}"'.encode())
    records, last = list_page(client, keys, "alice", "+", 2)
    assert records == [b'"4"', b'"3"']
    assert last == keys.index_member(TaskKey("alice", "t3"), NOW + 3)
    records, last = list_page(client, keys, "alice", "(" + last, 3)
    assert records == [b'"2"', b'"1"', b'"0"']
    assert last == ""


def test_list_page_gives_each_task_in_fixed_places_without_its_write_history(
    client: redis.Redis, keys: KeySchema
) -> None:
    task = TaskKey("alice", "t7")
    create(client, keys, task, data=b'"7"')
    merge(client, keys, task, {"b": [1, 2], "a": 1})
    reply = client.eval(
        LIST_PAGE.source, 2, keys.index_key("alice"), keys.task_prefix("alice"), "+", 10, 100
    )
    assert isinstance(reply, list)
    assert reply.pop() == b""
    assert len(reply) == 8
    assert reply[-1] == []  # no queue fields: the task was not submitted
    assert not any(b"aa01" in part for part in reply if isinstance(part, bytes))
    [record] = page_records(reply)
    assert (record.version, record.core_version, record.updated_at_ms) == (2, 1, NOW + 5)
    assert (record.format, record.data, record.task_id) == (FORMAT, b'"7"', "t7")
    assert json.loads(record.variables) == {"a": 1, "b": [1, 2]}


def test_list_page_skips_entries_of_vanished_tasks(client: redis.Redis, keys: KeySchema) -> None:
    for n in range(4):
        create(client, keys, TaskKey("alice", f"t{n}"), created=NOW + n, data=f'"{n}"'.encode())
    client.delete(keys.task_key(TaskKey("alice", "t2")), keys.task_key(TaskKey("alice", "t3")))
    records, last = list_page(client, keys, "alice", "+", 2)
    assert records == [b'"1"', b'"0"']
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


def test_purge_deletes_expired_terminal_tasks_and_keeps_the_next_expiry_due(
    client: redis.Redis, keys: KeySchema
) -> None:
    done = TaskKey("alice", "done")
    create(client, keys, done, expires=NOW + 10)
    create(client, keys, TaskKey("alice", "later"), expires=NOW + 50)
    ended_later = TaskKey("alice", "ended-later")
    create(client, keys, ended_later, expires=NOW + 30)
    cas(client, keys, done, 1, b"{}", "ee01", terminal=True)
    cas(client, keys, ended_later, 1, b"{}", "ee02", terminal=True)
    shard = keys.shard_of("alice")
    assert purge(client, keys, shard, NOW + 20, 100) == [1, 0]
    assert client.exists(keys.task_key(done)) == 0
    assert client.zscore(keys.due_key(shard), keys.due_member("alice")) == NOW + 30
    assert purge(client, keys, shard, NOW + 40, 100) == [1, 0]
    assert client.zscore(keys.due_key(shard), keys.due_member("alice")) == NOW + 50


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
        node.eval(COMPARE_AND_SET.source, 2, "{a}:one", "{b}:two", 1, b"{}", "ee01", 1, "")


@pytest.mark.cluster
def test_a_task_key_derived_from_an_index_cannot_leave_the_index_slot(cluster_url: str) -> None:
    # The list script joins the declared task prefix with an index member's id. The
    # prefix starts with the owner's hash tag, so whatever a corrupted member holds,
    # the joined key hashes to the prefix's slot; a prefix of another slot than the
    # index is refused by the server before anything runs.
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        index = "{evil}:i:owner"
        cluster.zadd(index, {"000000000000001:{other}:t:owner:task": 0})
        reply = cluster.eval(LIST_PAGE.source, 2, index, "{evil}:t:owner:", "+", 10, 100)
        assert reply == [b""]  # the joined key is {evil}:t:owner:{other}..., which is empty
        cluster.delete(index)
    with (
        redis.Redis.from_url(cluster_url) as node,
        pytest.raises(redis.exceptions.ResponseError, match="hash to the same slot"),
    ):
        node.eval(LIST_PAGE.source, 2, "{evil}:i:owner", "{other}:t:owner:", "+", 10, 100)


@pytest.mark.cluster
def test_the_task_key_a_script_derives_lies_in_the_slot_of_its_declared_keys(
    cluster_url: str,
) -> None:
    # Scripts join the owner's task prefix (a declared key) with the id of an index
    # member: both carry the owner's hash tag, so the derived key is in the same slot.
    keys = KeySchema(prefix=f"s{uuid.uuid4().hex[:10]}", shards=16)
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        for owner in ("alice", "bob", "carol/with:odd{chars}", "x" * 300):
            task = TaskKey(owner, str(uuid.uuid4()))
            member = keys.index_member(task, NOW)
            derived = keys.task_prefix(owner) + member.partition(":")[2]
            assert derived == keys.task_key(task)
            slots = {
                cluster.keyslot(name)
                for name in (
                    derived,
                    keys.task_prefix(owner),
                    keys.index_key(owner),
                    keys.expiry_key(owner),
                    keys.due_key(keys.shard_of(owner)),
                )
            }
            assert len(slots) == 1
