"""The configuration guard: a server that may evict keys is named, and can be refused.

Tasks carry TTLs, so a ``volatile-*`` eviction policy evicts them first, silently.
The store reads each node's ``maxmemory_policy`` once per process (``INFO memory``),
logs a warning for anything but ``noeviction``, and refuses to work with
``StoreConfig(require_noeviction=True)``; ``taskstore-redis doctor`` fails with
the same words. A full server on ``noeviction`` refuses writes instead: a typed
error, nothing half-written, reads still served.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.exceptions

import taskstore_redis as ts
import taskstore_redis.asyncio as ats
from taskstore_redis._cli.main import main
from taskstore_redis._redis import guard
from taskstore_redis.testing import RedisServer, redis_server

from .test_acl import ACL_RULES, make_user

pytestmark = pytest.mark.redis

OWNER = "alice"
METHOD = "tools/call"
RISK = re.compile(
    r"maxmemory-policy is volatile-lru: tasks carry TTLs, so volatile-\* policies evict "
    r"them first, silently .*set maxmemory-policy noeviction"
)


@pytest.fixture(autouse=True)
def fresh_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what this process learnt about nodes (servers of other tests reuse ports)."""
    monkeypatch.setattr(guard, "_policies", {})


@pytest.fixture(scope="module")
def evicting() -> Iterator[RedisServer]:
    with redis_server(["--maxmemory-policy", "volatile-lru"]) as server:
        yield server


@pytest.fixture(scope="module")
def safe() -> Iterator[RedisServer]:
    with redis_server(["--maxmemory-policy", "noeviction"]) as server:
        yield server


def guard_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "taskstore_redis.redis"]


def test_a_volatile_lru_server_is_named_in_one_warning_per_process_and_node(
    evicting: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with ts.GenericTaskStore.from_url(evicting.url, prefix=prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id  # a warning, not a refusal
        store.set_variables(task_id, {"a": 1}, owner_id=OWNER)
        store.get(task_id, owner_id=OWNER)
    with ts.GenericTaskStore.from_url(evicting.url, prefix=prefix) as again:
        assert again.get(task_id, owner_id=OWNER).variables == {"a": 1}
    warnings = [r for r in guard_records(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    message = warnings[0].getMessage()
    assert f"127.0.0.1:{evicting.port}" in message
    assert RISK.search(message), message


def test_a_noeviction_server_logs_nothing(
    safe: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    with ts.GenericTaskStore.from_url(safe.url) as store:
        store.create(METHOD, owner_id=OWNER)
    assert [r for r in guard_records(caplog) if "maxmemory" in r.getMessage()] == []
    assert [r for r in guard_records(caplog) if r.levelno >= logging.WARNING] == []
    assert guard.unchecked([f"127.0.0.1:{safe.port}"]) == []  # it was read


def test_the_check_costs_one_info_per_node_and_process_not_one_per_operation(
    safe: RedisServer,
) -> None:
    with redis.Redis.from_url(safe.url) as admin:
        admin.config_resetstat()
        with ts.GenericTaskStore.from_url(safe.url, cluster=False) as store:
            for _ in range(5):
                store.get(store.create(METHOD, owner_id=OWNER).task.task_id, owner_id=OWNER)
        with ts.GenericTaskStore.from_url(safe.url, cluster=False) as other:
            other.list(owner_id=OWNER)
        calls = admin.info("commandstats")["cmdstat_info"]["calls"]  # not counting this one
    assert calls == 1


def test_require_noeviction_refuses_a_volatile_lru_server_with_a_typed_error(
    evicting: RedisServer,
) -> None:
    config = ts.StoreConfig(require_noeviction=True)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    with ts.GenericTaskStore.from_url(evicting.url, config, prefix=prefix) as store:
        for call in (
            lambda: store.create(METHOD, owner_id=OWNER),
            lambda: store.list(owner_id=OWNER),
        ):
            with pytest.raises(ts.ServerMisconfigured) as info:
                call()
            error = info.value
            assert isinstance(error, ts.StoreUnavailable)
            assert not error.outcome_unknown
            assert (error.setting, error.value) == ("maxmemory-policy", "volatile-lru")
            assert error.node == f"127.0.0.1:{evicting.port}"
            assert RISK.search(str(error)), str(error)
    with redis.Redis.from_url(evicting.url) as admin:
        assert list(admin.scan_iter(f"*{prefix}*")) == []  # nothing was written


@pytest.mark.anyio
async def test_the_async_store_refuses_too_and_works_on_noeviction(
    evicting: RedisServer, safe: RedisServer
) -> None:
    config = ts.StoreConfig(require_noeviction=True)
    async with ats.GenericTaskStore.from_url(evicting.url, config) as store:
        with pytest.raises(ts.ServerMisconfigured):
            await store.create(METHOD, owner_id=OWNER)
    async with ats.GenericTaskStore.from_url(safe.url, config) as fine:
        record = await fine.create(METHOD, owner_id=OWNER)
        assert (
            await fine.get(record.task.task_id, owner_id=OWNER)
        ).task.status is ts.TaskStatus.WORKING


def test_require_noeviction_on_a_backend_built_by_hand(evicting: RedisServer) -> None:
    backend = ts.RedisBackend(redis.Redis.from_url(evicting.url))
    config = ts.StoreConfig(require_noeviction=True)
    with ts.GenericTaskStore(backend, config) as store, pytest.raises(ts.ServerMisconfigured):
        store.create(METHOD, owner_id=OWNER)


def test_require_noeviction_must_be_a_bool() -> None:
    with pytest.raises(ts.InvalidArgument):
        ts.StoreConfig(require_noeviction=1)  # type: ignore[arg-type]


def test_the_memory_backend_takes_require_noeviction_and_never_evicts() -> None:
    store = ts.GenericTaskStore(ts.InMemoryBackend(), ts.StoreConfig(require_noeviction=True))
    assert store.create(METHOD, owner_id=OWNER).task.status is ts.TaskStatus.WORKING


def test_without_info_the_policy_is_logged_unchecked_and_require_refuses(
    safe: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskstore_redis")
    with redis.Redis.from_url(safe.url, decode_responses=True) as admin:
        user = make_user(safe, admin, ACL_RULES.replace(" +info", ""))
        try:
            with ts.GenericTaskStore.from_url(user.url, prefix=user.prefix, cluster=False) as s:
                s.create(METHOD, owner_id=OWNER)  # works: the policy is only unknown
            [record] = [r for r in guard_records(caplog) if "maxmemory" in r.getMessage()]
            assert record.levelno == logging.INFO
            assert "could not read maxmemory-policy" in record.getMessage()
            config = ts.StoreConfig(require_noeviction=True)
            with (
                ts.GenericTaskStore.from_url(
                    user.url, config, prefix=user.prefix, cluster=False
                ) as strict,
                pytest.raises(ts.ServerMisconfigured) as info,
            ):
                strict.create(METHOD, owner_id=OWNER)
            assert info.value.value is None
            assert "grant +info" in str(info.value)
        finally:
            admin.execute_command("ACL", "DELUSER", user.name)


@pytest.mark.cluster
def test_each_primary_of_a_cluster_is_checked(
    cluster_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskstore_redis")
    with redis.RedisCluster.from_url(cluster_url) as admin:
        primaries = admin.get_primaries()
        evicting = primaries[1]
        admin.config_set("maxmemory-policy", "volatile-lru", target_nodes=evicting)
        try:
            with ts.GenericTaskStore.from_url(cluster_url) as store:
                store.create(METHOD, owner_id=OWNER)
                store.list(owner_id=OWNER)
            assert guard.unchecked([node.name for node in primaries]) == []
            warnings = [r.getMessage() for r in guard_records(caplog)]
            assert len(warnings) == 1, warnings
            assert warnings[0].startswith(f"Redis at {evicting.name}: ")
            assert RISK.search(warnings[0])
            strict = ts.StoreConfig(require_noeviction=True)
            with (
                ts.GenericTaskStore.from_url(cluster_url, strict) as refusing,
                pytest.raises(ts.ServerMisconfigured) as info,
            ):
                refusing.create(METHOD, owner_id=OWNER)
            assert info.value.node == evicting.name
        finally:
            admin.config_set("maxmemory-policy", "noeviction", target_nodes=evicting)


def test_an_unreachable_server_is_checked_once_it_answers_and_never_fails_a_call_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="taskstore_redis.redis")
    with (
        redis_server(["--maxmemory-policy", "volatile-lru"]) as server,
        ts.GenericTaskStore.from_url(server.url, cluster=False) as store,
        ts.GenericTaskStore.from_url(
            server.url, ts.StoreConfig(require_noeviction=True), cluster=False
        ) as strict,
    ):
        server.kill()
        with pytest.raises(ts.StoreUnavailable) as lenient_error:
            store.list(owner_id=OWNER)
        assert "during list_page" in str(lenient_error.value)  # the call's own failure
        with pytest.raises(ts.StoreUnavailable) as strict_error:
            strict.list(owner_id=OWNER)
        assert "during checking the eviction policy" in str(strict_error.value)
        assert not isinstance(strict_error.value, ts.ServerMisconfigured)
        assert not [r for r in guard_records(caplog) if "maxmemory" in r.getMessage()]
        server.restart()
        assert store.list(owner_id=OWNER).tasks == []  # checked now: a warning, not a failure
        with pytest.raises(ts.ServerMisconfigured):
            strict.list(owner_id=OWNER)
    [warning] = [r for r in guard_records(caplog) if "maxmemory" in r.getMessage()]
    assert RISK.search(warning.getMessage())


# --- doctor ----------------------------------------------------------------------------------


def test_doctor_fails_on_a_volatile_lru_server_with_the_same_words(
    evicting: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--redis-url", evicting.url]) == 1
    out = capsys.readouterr().out
    joined = " ".join(out.split())
    assert re.search(rf"EVICTION 127\.0\.0\.1:{evicting.port}: ", joined), out
    assert RISK.search(joined), out
    assert out.rstrip().endswith("problems found")


def test_doctor_shows_noeviction_as_healthy(
    safe: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--redis-url", safe.url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^eviction\s+127\.0\.0\.1:\d+: maxmemory-policy noeviction$", out, re.M)


@pytest.mark.cluster
def test_doctor_checks_every_primary_of_a_cluster(
    cluster_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--redis-url", cluster_url]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^eviction\s+\S+: maxmemory-policy noeviction$", out, re.M)) == 3


# --- a full server on noeviction ---------------------------------------------------------------


def test_a_full_noeviction_server_refuses_writes_whole_and_keeps_serving_reads() -> None:
    blob = "x" * 20_000
    with (
        redis_server(["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]) as server,
        ts.GenericTaskStore.from_url(
            server.url,
            security=ts.SecurityConfig(max_tasks_per_owner=None),
            prefix="full",
            cluster=False,
        ) as store,
    ):
        written: dict[str, dict[str, Any]] = {}
        refusals: list[ts.StoreUnavailable] = []
        refused_both = {"Redis refused create", "Redis refused merge_variables"}
        for number in range(5000):
            try:
                task_id = store.create(METHOD, owner_id=OWNER).task.task_id
                written[task_id] = {}
                store.set_variables(task_id, {"n": number, "blob": blob}, owner_id=OWNER)
                written[task_id] = {"n": number, "blob": blob}
            except ts.StoreUnavailable as exc:
                refusals.append(exc)
                if {str(error).split(":")[0] for error in refusals} == refused_both:
                    break
        # big merges are refused first, then creates too
        assert {str(error).split(":")[0] for error in refusals} == refused_both
        assert written, "nothing could be written at all"
        for error in refusals:
            assert type(error) is ts.StoreUnavailable
            assert not error.outcome_unknown
            assert isinstance(error.__cause__, redis.exceptions.OutOfMemoryError)
            assert "maxmemory" in str(error), str(error)
        # every task is whole: exactly the variables of its last acknowledged write
        for task_id, variables in written.items():
            record = store.get(task_id, owner_id=OWNER)
            assert record.variables == variables, task_id
            assert record.task.status is ts.TaskStatus.WORKING
        # no task beyond the acknowledged ones: a refused create left nothing behind
        listed: set[str] = set()
        cursor = None
        while True:
            page = store.list(owner_id=OWNER, cursor=cursor, limit=100)
            listed |= {record.task.task_id for record in page.tasks}
            cursor = page.next_cursor
            if cursor is None:
                break
        assert listed == set(written)
        with redis.Redis.from_url(server.url) as admin:
            hashes = [key for key in admin.scan_iter("*", count=1000) if admin.type(key) == b"hash"]
        assert len(hashes) == len(written)  # one hash per task, none from a refused create
