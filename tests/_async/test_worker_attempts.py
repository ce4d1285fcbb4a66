"""``run_worker`` and the attempt counter: only a handler's exception or a lost lease spends one.

A worker stopped while a handler still runs past ``grace_s`` releases the task with its
attempt handed back, so a task on its last attempt is claimed again by the next worker
rather than failed; a handler that raises still spends its attempt. Every test runs on
memory, a standalone Redis and a cluster, and scripts/unasync.py derives the blocking
twin. No test depends on how long anything takes: the grace is short only to stop a
handler that would otherwise sleep for minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import TaskStatus, run_worker

StoreFactory = Callable[..., ts.GenericTaskStore]
OWNER = "alice"
METHOD = "tools/call"
FAST: dict[str, Any] = {
    "retry_base_ms": 20,
    "retry_max_ms": 100,
    "idle_wait_s": 0.1,
    "sweep_every_s": 0.2,
    "grace_s": 30.0,
    "handle_signals": False,
}
SHORT_GRACE_S = 0.2

BOUND_S = 20.0
"""The longest a worker runs in a test."""

pytestmark = pytest.mark.timeout(90)


class Flag:
    """The worker's stop flag, set by a handler; it also sets itself after ``BOUND_S``."""

    def __init__(self) -> None:
        self.value = False
        self.deadline = time.monotonic() + BOUND_S

    def is_set(self) -> bool:
        return self.value or time.monotonic() > self.deadline

    def set(self) -> None:
        self.value = True


@pytest.fixture
def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store()


async def stop_while_running(store: ts.GenericTaskStore) -> ts.WorkerStats:
    """Run a worker whose handler stops it and then outlives the grace period."""
    stop = Flag()
    over = Flag()
    attempts: list[int] = []

    async def outlives_the_grace(lease: ts.Lease) -> str:
        attempts.append(lease.attempt)
        stop.set()
        while not over.is_set():  # stopped once the grace period is over (a thread: let go)
            await anyio.sleep(0.05)
        return "never"

    try:
        stats = await run_worker(
            store, outlives_the_grace, stop=stop, **{**FAST, "grace_s": SHORT_GRACE_S}
        )
    finally:
        over.set()
    assert attempts == [1]
    assert (stats.released, stats.completed, stats.failed, stats.lost) == (1, 0, 0, 0)
    return stats


@pytest.mark.anyio
async def test_a_task_on_its_last_attempt_released_at_a_stop_is_completed_by_the_next_worker(
    store: ts.GenericTaskStore,
) -> None:
    task_id = (await store.submit(METHOD, {"n": 1}, owner_id=OWNER, max_attempts=1)).task.task_id
    await stop_while_running(store)
    record = await store.get(task_id, owner_id=OWNER)
    assert record.job is not None and (record.job.state, record.job.attempt) == ("ready", 0)

    stop = Flag()
    attempts: list[int] = []

    async def handler(lease: ts.Lease) -> str:
        attempts.append(lease.attempt)
        stop.set()
        return "done"

    stats = await run_worker(store, handler, stop=stop, **FAST)

    assert attempts == [1]
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "done")
    assert record.job is not None and record.job.attempt == 1
    assert (stats.completed, stats.failed, stats.lost, stats.retried) == (1, 0, 0, 0)
    assert (await store.queue_stats()).given_up == 0


@pytest.mark.anyio
async def test_a_handler_exception_still_spends_its_attempt_after_a_stop_handed_one_back(
    store: ts.GenericTaskStore,
) -> None:
    task_id = (await store.submit(METHOD, {"n": 1}, owner_id=OWNER, max_attempts=2)).task.task_id
    await stop_while_running(store)

    stop = Flag()
    attempts: list[int] = []

    async def raises(lease: ts.Lease) -> str:
        attempts.append(lease.attempt)
        if lease.attempt >= 2:
            stop.set()  # the last attempt: the worker stops once it has failed the task
        raise ValueError(f"attempt {lease.attempt} fails")

    stats = await run_worker(store, raises, stop=stop, **FAST)

    # both attempts of the task are the handler's: the stop spent none, each exception one
    assert attempts == [1, 2]
    record = await store.get(task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.FAILED
    assert record.job is not None and record.job.attempt == 2
    assert (stats.retried, stats.failed, stats.completed, stats.lost) == (1, 1, 0, 0)
