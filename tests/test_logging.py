"""Logging: ``taskstore_redis`` and a child logger per area, for what an operator needs.

The library never configures handlers or levels. It logs lost and regained
connections, script reloads after ``NOSCRIPT``, writes of unknown outcome,
lost and restored subscriptions, and the configuration guard's findings; a call
that succeeds logs nothing at INFO or above.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

import taskstore_redis as ts
from taskstore_redis._core import log
from taskstore_redis.testing import redis_server

from .test_wait_redis import GUARD, admin, port_of, subscription_clients

OWNER = "alice"
METHOD = "tools/call"
LOGGERS = ("taskstore_redis", "taskstore_redis.redis", "taskstore_redis.pubsub")


def records(
    caplog: pytest.LogCaptureFixture, name: str, level: int = logging.DEBUG
) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and r.levelno >= level]


def test_the_loggers_are_children_of_one_root_and_configured_by_nobody() -> None:
    assert log.ROOT.name == "taskstore_redis"
    assert log.REDIS.parent is log.ROOT
    assert log.PUBSUB.parent is log.ROOT
    with ts.GenericTaskStore(ts.InMemoryBackend()) as store:
        store.create(METHOD, owner_id=OWNER)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        assert logger.handlers == [], name
        assert logger.level == logging.NOTSET, name
        assert logger.propagate, name


@pytest.mark.redis
def test_successful_operations_log_nothing_at_info_or_above(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    with (
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store,
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as writer,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        store.create(METHOD, owner_id=OWNER)  # the scripts are loaded from here on
        caplog.clear()
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        store.set_variables(task_id, {"step": 1}, owner_id=OWNER)
        store.update_status(task_id, ts.TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
        waiting = pool.submit(store.wait_for_result, task_id, owner_id=OWNER, timeout=GUARD)
        writer.update_status(task_id, ts.TaskStatus.WORKING, owner_id=OWNER)
        writer.complete_with_result(
            task_id, ts.TaskStatus.COMPLETED, None, {"ok": 1}, owner_id=OWNER
        )
        assert waiting.result(GUARD) == {"ok": 1}
        assert store.get(task_id, owner_id=OWNER).task.status is ts.TaskStatus.COMPLETED
        assert len(store.list(owner_id=OWNER).tasks) == 2
        store.cleanup_expired()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


@pytest.mark.redis
def test_a_lost_server_is_one_warning_and_its_return_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    with redis_server() as server, ts.GenericTaskStore.from_url(server.url) as store:
        store.list(owner_id=OWNER)
        caplog.clear()
        server.kill()
        for _ in range(3):
            with pytest.raises(ts.StoreUnavailable):
                store.list(owner_id=OWNER)
        warnings = records(caplog, "taskstore_redis.redis", logging.WARNING)
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert warnings[0].getMessage().startswith("Redis unavailable during list_page: ")
        assert warnings[0].getMessage().endswith("; sending it again")
        failed = len(records(caplog, "taskstore_redis.redis"))  # the others at DEBUG
        assert failed == 9  # 3 calls, each tried 3 times (read_retries=2)
        server.restart()
        assert store.list(owner_id=OWNER).tasks == []
    [back] = [
        r
        for r in records(caplog, "taskstore_redis.redis", logging.INFO)
        if "answers" in r.getMessage()
    ]
    assert back.levelno == logging.INFO
    assert back.getMessage() == "Redis answers again, after 9 failed attempts"


@pytest.mark.redis
def test_a_script_reload_after_noscript_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    with (
        redis_server() as server,
        ts.GenericTaskStore.from_url(server.url) as store,
        redis.Redis.from_url(server.url) as control,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        caplog.clear()
        control.script_flush()
        store.cancel(task_id, owner_id=OWNER)
    [line] = records(caplog, "taskstore_redis.redis")
    assert line.levelno == logging.INFO
    assert re.fullmatch(
        r"NOSCRIPT during compare_and_set: the server lost the scripts; loaded them again",
        line.getMessage(),
    )


@pytest.mark.redis
def test_a_write_of_unknown_outcome_is_a_warning(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    with (
        ts.GenericTaskStore.from_url(
            redis_url, prefix=key_prefix, wait_replicas=1, wait_timeout_ms=10
        ) as store,
        pytest.raises(ts.StoreUnavailable) as info,
    ):
        store.create(METHOD, owner_id=OWNER)
    assert info.value.outcome_unknown
    [warning] = records(caplog, "taskstore_redis.redis", logging.WARNING)
    assert warning.getMessage() == f"outcome unknown: {info.value}"
    assert "acknowledged by only 0 of 1 replicas" in warning.getMessage()


@pytest.mark.redis
def test_a_lost_subscription_is_a_warning_and_its_return_one_line(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="taskstore_redis")
    port = port_of(redis_url)
    with (
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store,
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as writer,
        admin(port) as control,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        waiting = pool.submit(
            store.wait, task_id, owner_id=OWNER, until_terminal=True, timeout=GUARD
        )
        deadline = time.monotonic() + GUARD
        while not subscription_clients(port, key_prefix):
            assert time.monotonic() < deadline, "the waiter never subscribed"
            time.sleep(0.01)
        control.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        writer.cancel(task_id, owner_id=OWNER)
        assert waiting.result(GUARD).task.status is ts.TaskStatus.CANCELLED
    lines = [
        (r.levelname, r.getMessage())
        for r in records(caplog, "taskstore_redis.pubsub", logging.INFO)
    ]
    assert len(lines) == 2, lines
    assert lines[0][0] == "WARNING"
    assert lines[0][1].startswith(f"subscription connection to 127.0.0.1:{port} lost (")
    assert lines[0][1].endswith("subscribing its 1 channels again")
    assert lines[1] == ("INFO", f"subscriptions to 127.0.0.1:{port} confirmed again")
