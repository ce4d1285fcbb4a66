"""The worker's log lines show what a handler or a user put in them escaped, never obeyed.

A handler's exception text becomes the failed task's status message, stored as
written; in the worker's log (``taskstore_redis.worker``) it and the task id
show their control characters escaped (``\\x1b``, ``\\n``), so one record stays
one line and a terminal obeys nothing in it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import taskstore_redis as ts
from taskstore_redis import StoreUnavailable, TaskStatus

OWNER = "alice"
HOSTILE = "A\x1b[31mRED\x1b[2J\nforged line\r\u202e"


class Flag:
    def __init__(self) -> None:
        self.value = False
        self.deadline = time.monotonic() + 20

    def is_set(self) -> bool:
        return self.value or time.monotonic() > self.deadline

    def set(self) -> None:
        self.value = True


def raw_controls(text: str) -> list[str]:
    return [ch for ch in text if not ch.isprintable()]


def worker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("taskstore_redis.worker")]


def test_a_handlers_exception_text_is_logged_escaped_and_stored_as_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ts.GenericTaskStore(ts.InMemoryBackend())
    task_id = store.submit("tools/call", {}, owner_id=OWNER, max_attempts=2).task.task_id
    stop = Flag()

    def handler(lease: ts.Lease) -> None:
        if lease.attempt == 2:
            stop.set()
        raise ValueError(HOSTILE)

    with caplog.at_level(logging.INFO, logger="taskstore_redis.worker"):
        ts.run_worker(
            store, handler, stop=stop, handle_signals=False, retry_base_ms=10, retry_max_ms=20
        )

    record = store.get(task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.FAILED
    assert record.task.status_message == HOSTILE  # the stored text is kept as is
    lines = worker_lines(caplog)
    about = [line for line in lines if "RED" in line]
    assert len(about) == 2, lines  # "raised on attempt 1 ... retried", "failed on attempt 2"
    for line in about:
        assert raw_controls(line) == [], line
        assert "\\x1b[31mRED\\x1b[2J\\nforged line\\r\\u202e" in line


def test_a_store_error_met_by_a_lease_write_is_logged_escaped(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ts.GenericTaskStore(ts.InMemoryBackend())
    task_id = store.submit("tools/call", {}, owner_id=OWNER, max_attempts=1).task.task_id
    backend: Any = store._backend
    real = backend.merge_variables
    calls: list[int] = []

    def flaky(merge: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable(f"Redis unavailable: {HOSTILE}")
        return real(merge)

    monkeypatch.setattr(backend, "merge_variables", flaky)
    stop = Flag()

    def handler(lease: ts.Lease) -> str:
        lease.set_variables({"k": 1})
        stop.set()
        return "ok"

    with caplog.at_level(logging.INFO, logger="taskstore_redis.worker"):
        ts.run_worker(store, handler, stop=stop, handle_signals=False)

    assert store.get(task_id, owner_id=OWNER).task.status is TaskStatus.COMPLETED
    about = [line for line in worker_lines(caplog) if "RED" in line]
    assert about, worker_lines(caplog)
    for line in about:
        assert raw_controls(line) == [], line
