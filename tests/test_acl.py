"""The store under a Redis ACL user limited to its key prefix and the commands it uses.

Each test runs on a throwaway server of this module (never the shared session one: the
tests change its users) as a user made from ``ACL_RULES``, the line the README gives.

What the store sends, found with MONITOR and ``ACL LOG``:

- on connect, redis-py sends ``HELLO 3 AUTH <user> <password>`` (always permitted), then
  ``CLIENT SETINFO LIB-NAME``/``LIB-VER``, whose refusal it ignores. Redis 7.0 does not
  know that subcommand (and refuses ``+client|setinfo`` in an ACL), so the rules leave it
  out; on Redis >= 7.2 add ``+client|setinfo`` to keep ``ACL LOG`` free of its refusals;
- ``INFO cluster`` once, to detect cluster mode, unless ``cluster=`` is given;
- ``HGETALL`` for ``get``; ``EVALSHA`` for every other operation, and ``SCRIPT LOAD`` after
  ``NOSCRIPT``; ``WAIT`` after each write when ``wait_replicas`` is set;
- inside the scripts, which run with the caller's permissions: ``EXISTS HGET HMGET HSET
  HDEL HINCRBY HSTRLEN PEXPIREAT ZADD ZRANGE ZRANGEBYSCORE ZREM ZCOUNT DEL`` (and
  ``HGETALL``).

Every key the store touches, including those the scripts read from the owner index, lies
under ``{<prefix>:``, the hash tag of every key (``{<prefix>:<shard>}``).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import redis
import redis.exceptions

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import StoreUnavailable, TaskNotFound, TaskStatus, WaitTimeout
from taskstore_redis.testing import RedisServer, redis_server

pytestmark = pytest.mark.redis

ACL_RULES = (
    "on ><password> resetkeys ~{<prefix>:* resetchannels &{<prefix>:* -@all "
    "+hgetall +evalsha +script|load +info +wait +ssubscribe +sunsubscribe +ping "
    "+exists +hget +hmget +hset +hdel +hincrby +hstrlen +pexpireat +zadd +zrange +zrangebyscore "
    "+zrem +zcount +del +spublish +time +sadd +smembers +zcard +get +set +zscore +hkeys +hsetnx"
)
"""``ACL SETUSER <user>`` followed by these rules, with ``<password>`` and ``<prefix>``
filled in: keys under the store's prefix only, and only the commands the store sends
(first line) and its scripts run (second line)."""

METHOD = "tools/call"
OWNER = "alice"
SHORT_TTL_MS = 50


@dataclass(frozen=True)
class AclUser:
    name: str
    password: str
    prefix: str
    url: str


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as throwaway:
        yield throwaway


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """The server's default user, which may do anything."""
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        yield client


def command(client: redis.Redis, *args: Any) -> Any:
    """Send a raw command (redis-py leaves ``execute_command`` untyped)."""
    untyped: Any = client
    return untyped.execute_command(*args)


def make_user(server: RedisServer, admin: redis.Redis, rules: str) -> AclUser:
    name = f"taskstore-{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(16)
    prefix = f"acl{uuid.uuid4().hex[:10]}"
    filled = rules.replace("<password>", password).replace("<prefix>", prefix)
    command(admin, "ACL", "SETUSER", name, *filled.split())
    command(admin, "SCRIPT", "FLUSH")  # so the user must load the scripts itself
    command(admin, "ACL", "LOG", "RESET")
    url = f"redis://{name}:{password}@{server.host}:{server.port}/0"
    return AclUser(name, password, prefix, url)


@pytest.fixture
def acl_user(server: RedisServer, admin: redis.Redis) -> Iterator[AclUser]:
    user = make_user(server, admin, ACL_RULES)
    yield user
    command(admin, "ACL", "DELUSER", user.name)


def refusals(admin: redis.Redis, user: AclUser) -> list[tuple[str, str, str]]:
    """What the server refused the user since the log was reset: (reason, context, object).

    ``CLIENT SETINFO`` is left out: redis-py ignores its refusal (Redis >= 7.2 logs it).
    """
    entries: list[dict[str, Any]] = command(admin, "ACL", "LOG")
    return [
        (entry["reason"], entry["context"], entry["object"])
        for entry in entries
        if entry["username"] == user.name and entry["object"] != "client|setinfo"
    ]


def all_keys(admin: redis.Redis) -> set[str]:
    return set(admin.scan_iter(count=1000))


def test_acl_rules_give_the_user_exactly_the_prefix_and_the_commands(
    admin: redis.Redis, acl_user: AclUser
) -> None:
    described = command(admin, "ACL", "GETUSER", acl_user.name)
    if not isinstance(described, dict):  # RESP2: a flat list of names and values
        described = dict(zip(described[::2], described[1::2], strict=True))
    info: dict[str, Any] = described
    assert info["keys"] == f"~{{{acl_user.prefix}:*"
    assert info["channels"] == f"&{{{acl_user.prefix}:*"
    granted = set(info["commands"].split())
    assert "-@all" in granted
    assert {"+evalsha", "+script|load", "+info", "+wait", "+zcount"} <= granted
    # the hash commands: the server may show them as a category less some, so ask it
    key = f"{{{acl_user.prefix}:sc}}:names"
    for args in (("HMGET", key, "f"), ("HSETNX", key, "f", "v"), ("HGETALL", key)):
        assert command(admin, "ACL", "DRYRUN", acl_user.name, *args) in (b"OK", "OK"), args


def test_the_whole_lifecycle_runs_under_the_acl_user(admin: redis.Redis, acl_user: AclUser) -> None:
    before = all_keys(admin)
    with ts.GenericTaskStore.from_url(acl_user.url, prefix=acl_user.prefix) as store:
        tasks = [store.create(METHOD, owner_id=OWNER).task.task_id for _ in range(3)]
        doomed = store.create(METHOD, owner_id=OWNER, ttl_ms=SHORT_TTL_MS).task.task_id
        first, second, third = tasks
        assert store.get(first, owner_id=OWNER).task.status is TaskStatus.WORKING

        moved = store.update_status(first, "input_required", "need input", owner_id=OWNER)
        assert moved.task.status is TaskStatus.INPUT_REQUIRED
        assert store.set_variables(first, {"progress": 0.5}, owner_id=OWNER).variables == {
            "progress": 0.5
        }

        page_one = store.list(owner_id=OWNER, limit=2)
        assert page_one.next_cursor is not None
        page_two = store.list(owner_id=OWNER, cursor=page_one.next_cursor, limit=2)
        assert page_two.next_cursor is None
        listed = [record.task.task_id for record in [*page_one.tasks, *page_two.tasks]]
        assert sorted(listed) == sorted([*tasks, doomed])

        done = store.complete_with_result(
            first, "completed", "done", {"answer": 42}, owner_id=OWNER
        )
        assert done.task.status is TaskStatus.COMPLETED
        assert store.get_result(first, owner_id=OWNER) == {"answer": 42}
        assert store.wait_for_result(first, owner_id=OWNER, timeout=5) == {"answer": 42}
        assert store.cancel(second, owner_id=OWNER).task.status is TaskStatus.CANCELLED
        assert store.get(third, owner_id=OWNER).version == 1
        with pytest.raises(WaitTimeout):  # subscribes, reads, times out
            store.wait(third, owner_id=OWNER, timeout=0.05)

        time.sleep(3 * SHORT_TTL_MS / 1000)
        assert store.cleanup_expired() == 1
        with pytest.raises(TaskNotFound):
            store.get(doomed, owner_id=OWNER)
        assert sorted(record.task.task_id for record in store.list(owner_id=OWNER).tasks) == sorted(
            tasks
        )

    assert refusals(admin, acl_user) == []
    created = all_keys(admin) - before
    assert created
    assert all(key.startswith(f"{{{acl_user.prefix}:") for key in created)


@pytest.mark.anyio
async def test_the_async_store_runs_under_the_acl_user(
    admin: redis.Redis, acl_user: AclUser
) -> None:
    async with tsa.GenericTaskStore.from_url(acl_user.url, prefix=acl_user.prefix) as store:
        first = (await store.create(METHOD, owner_id=OWNER)).task.task_id
        second = (await store.create(METHOD, owner_id=OWNER, ttl_ms=SHORT_TTL_MS)).task.task_id
        await store.update_status(first, "input_required", owner_id=OWNER)
        await store.set_variables(first, {"k": "v"}, owner_id=OWNER)
        page = await store.list(owner_id=OWNER, limit=1)
        assert page.next_cursor is not None
        rest = await store.list(owner_id=OWNER, cursor=page.next_cursor, limit=1)
        assert {record.task.task_id for record in [*page.tasks, *rest.tasks]} == {first, second}
        await store.complete_with_result(first, "failed", "boom", {"error": "x"}, owner_id=OWNER)
        assert await store.get_result(first, owner_id=OWNER) == {"error": "x"}
        await anyio.sleep(3 * SHORT_TTL_MS / 1000)
        assert await store.cleanup_expired() == 1
        assert (await store.get(first, owner_id=OWNER)).task.status is TaskStatus.FAILED
    assert refusals(admin, acl_user) == []


def test_the_work_queue_runs_under_the_acl_user(admin: redis.Redis, acl_user: AclUser) -> None:
    with ts.GenericTaskStore.from_url(acl_user.url, prefix=acl_user.prefix) as store:
        record = store.submit(METHOD, {"n": 1}, owner_id=OWNER, queue="acl")
        lease = store.claim("acl", timeout=5, lease_ms=5000)
        assert lease is not None
        lease.renew(lease_ms=5000)
        lease.set_variables({"k": 1})
        lease.release()
        lease = store.claim("acl", timeout=5, lease_ms=200)
        assert lease is not None
        time.sleep(0.3)
        assert store.recover_leases() == 1
        lease = store.claim("acl", timeout=5)
        assert lease is not None
        lease.complete("completed", None, {"n": 1})
        assert store.queue_stats("acl").completed == 1
        assert store.queues() == ["acl"]
        assert store.get(record.task.task_id, owner_id=OWNER).task.status is TaskStatus.COMPLETED
        assert store.cleanup_expired() == 0
    assert refusals(admin, acl_user) == []


def test_schedules_run_under_the_acl_user(admin: redis.Redis, acl_user: AclUser) -> None:
    with ts.GenericTaskStore.from_url(acl_user.url, prefix=acl_user.prefix) as store:
        store.schedule("acl", owner_id=OWNER, request_method=METHOD, every_ms=100, queue="acl")
        stop = threading.Event()
        scheduler = threading.Thread(target=ts.run_scheduler, args=(store,), kwargs={"stop": stop})
        scheduler.start()
        try:
            lease = store.claim("acl", timeout=30)
        finally:
            stop.set()
            scheduler.join()
        assert lease is not None
        job = store.get(lease.task_id, owner_id=OWNER).job
        assert job is not None and job.scheduled_for is not None
        assert [info.name for info in store.schedules()] == ["acl"]
        assert store.unschedule("acl")
    assert refusals(admin, acl_user) == []


def test_the_user_cannot_read_a_key_outside_its_prefix(
    admin: redis.Redis, acl_user: AclUser
) -> None:
    admin.set("other:key", "secret")
    admin.hset(f"{{{acl_user.prefix}x:0}}:t:alice:task", mapping={"v": 1, "d": "{}"})
    with redis.Redis.from_url(acl_user.url) as client:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("other:key")  # neither the command nor the key
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hmget("other:key", ["v", "d"])  # a command it has, on a key outside
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hmget(f"{{{acl_user.prefix}x:0}}:t:alice:task", ["v", "d"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            command(client, "KEYS", "*")
        assert client.hmget(f"{{{acl_user.prefix}:0}}:t:alice:task", ["v", "d"]) == [None, None]
    assert ("key", "toplevel", "other:key") in refusals(admin, acl_user)


def test_a_store_with_another_prefix_gets_store_unavailable_from_a_permission_error(
    admin: redis.Redis, acl_user: AclUser
) -> None:
    before = all_keys(admin)
    with ts.GenericTaskStore.from_url(acl_user.url, prefix=acl_user.prefix + "x") as store:
        calls = {
            "get": lambda: store.get(str(uuid.uuid4()), owner_id=OWNER),
            "create": lambda: store.create(METHOD, owner_id=OWNER),
            "list": lambda: store.list(owner_id=OWNER),
            "cleanup_expired": store.cleanup_expired,
        }
        for operation, call in calls.items():
            with pytest.raises(StoreUnavailable) as info:
                call()
            error = info.value
            assert isinstance(error.__cause__, redis.exceptions.NoPermissionError), operation
            assert not error.outcome_unknown, operation
            assert "Redis refused" in str(error), operation
    assert all_keys(admin) == before
    assert {reason for reason, _, _ in refusals(admin, acl_user)} == {"key"}


def test_wait_for_replicas_is_permitted(admin: redis.Redis, acl_user: AclUser) -> None:
    """The server has no replica, so WAIT reports 0 acknowledgements: not a refusal."""
    with (
        ts.GenericTaskStore.from_url(
            acl_user.url, prefix=acl_user.prefix, wait_replicas=1, wait_timeout_ms=10
        ) as store,
        pytest.raises(StoreUnavailable) as info,
    ):
        store.create(METHOD, owner_id=OWNER)
    assert info.value.outcome_unknown
    assert "acknowledged by only 0 of 1 replicas" in str(info.value)
    assert refusals(admin, acl_user) == []


def test_without_info_the_store_needs_cluster_mode_given(
    server: RedisServer, admin: redis.Redis
) -> None:
    user = make_user(server, admin, ACL_RULES.replace(" +info", ""))
    try:
        with ts.GenericTaskStore.from_url(user.url, prefix=user.prefix) as store:
            with pytest.raises(StoreUnavailable) as info:
                store.create(METHOD, owner_id=OWNER)
            assert isinstance(info.value.__cause__, redis.exceptions.NoPermissionError)
        with ts.GenericTaskStore.from_url(user.url, prefix=user.prefix, cluster=False) as store:
            task_id = store.create(METHOD, owner_id=OWNER).task.task_id
            assert store.cancel(task_id, owner_id=OWNER).task.status is TaskStatus.CANCELLED
    finally:
        command(admin, "ACL", "DELUSER", user.name)
