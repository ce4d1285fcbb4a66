"""``run_worker`` on the async store stops its handlers: a lost lease, the grace period, a cancel.

An async handler is cancelled where the blocking worker's thread can only be left
to finish (tests/test_worker_threads.py), so these have no blocking twin. The
rest of ``run_worker`` is specified once in tests/_async/test_worker_loop.py,
whose helpers these tests use.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import TaskStatus, run_worker
from tests._async.test_worker_loop import (
    BOUND_S,
    FAST,
    OWNER,
    Flag,
    submit_many,
    with_worker,
)

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., ts.GenericTaskStore]


async def test_a_task_cancelled_while_leased_stops_its_handler_and_is_abandoned_quietly(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)
    started = anyio.Event()
    stopped = anyio.Event()

    async def endless(lease: ts.Lease) -> None:
        started.set()
        try:
            await anyio.sleep(BOUND_S)
        finally:
            stopped.set()

    async def body(_: Flag) -> None:
        with anyio.fail_after(BOUND_S):
            await started.wait()
            await store.cancel(task_id, owner_id=OWNER)
            await stopped.wait()  # the next renewal found the lease lost ("cancelled")

    stats = await with_worker(store, endless, body, lease_ms=300)
    record = await store.get(task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.CANCELLED
    assert (stats.lost, stats.completed, stats.failed, stats.released) == (1, 0, 0, 0)


async def test_after_the_grace_period_the_rest_is_released_for_a_later_attempt(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)
    started = anyio.Event()

    async def stuck(lease: ts.Lease) -> None:
        started.set()
        await anyio.sleep(BOUND_S)

    async def body(flag: Flag) -> None:
        with anyio.fail_after(BOUND_S):
            await started.wait()

    stats = await with_worker(store, stuck, body, grace_s=0.2)
    assert stats.released == 1
    record = await store.get(task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.WORKING
    assert record.job is not None and record.job.state == "ready"
    lease = await store.claim(timeout=BOUND_S)
    assert lease is not None and lease.task_id == task_id


async def test_cancelling_run_worker_also_drains_and_leaves_no_task_leased(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 3)
    started = anyio.Event()

    async def stuck(lease: ts.Lease) -> None:
        started.set()
        await anyio.sleep(BOUND_S)

    with anyio.fail_after(BOUND_S):
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: run_worker(store, stuck, concurrency=3, grace_s=0.1, **FAST))
            await started.wait()
            group.cancel_scope.cancel()
    states = [(await store.get(task_id, owner_id=OWNER)).job for task_id in ids]
    assert [job.state if job else None for job in states] == ["ready"] * 3
    stats = await store.queue_stats("default")
    assert stats.leased == 0
