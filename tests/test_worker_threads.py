"""The blocking ``run_worker``'s threads: what only the blocking worker does.

It runs the async loop in an event loop of its own and sends every call of the
blocking store to a thread; sync handlers get the blocking lease (their writes
block), in a worker thread, and a handler still running after the grace period is
left to finish in its thread. The loop itself is specified once, for both workers,
in tests/_async/test_worker_loop.py (and its generated twin).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

import taskstore_redis
import taskstore_redis.asyncio
from taskstore_redis import LeaseLost, TaskStatus, WorkerStats, run_worker
from tests._sync.test_worker_loop import BOUND_S, FAST, OWNER

StoreFactory = Callable[..., taskstore_redis.GenericTaskStore]


@contextmanager
def worker_thread(
    store: taskstore_redis.GenericTaskStore, handler: Any, **options: Any
) -> Iterator[Future[WorkerStats]]:
    """Run the blocking ``run_worker`` in a thread; stop it (a threading.Event) on leaving."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(run_worker, store, handler, stop=stop, **{**FAST, **options})
        try:
            yield done
        finally:
            stop.set()
            done.result(timeout=BOUND_S)


def final(store: taskstore_redis.GenericTaskStore, task_id: str) -> taskstore_redis.TaskRecord:
    record = store.get(task_id, owner_id=OWNER)
    while not record.task.status.is_terminal:
        record = store.wait(task_id, owner_id=OWNER, after_version=record.version, timeout=BOUND_S)
    return record


def test_run_worker_is_blocking_in_taskstore_redis_and_awaitable_in_asyncio() -> None:
    assert not inspect.iscoroutinefunction(taskstore_redis.run_worker)
    assert inspect.iscoroutinefunction(taskstore_redis.asyncio.run_worker)
    assert taskstore_redis.WorkerStats is taskstore_redis.asyncio.WorkerStats


def test_a_sync_handler_writes_through_its_blocking_lease_and_its_result_completes_the_task(
    sync_make_store: StoreFactory,
) -> None:
    store = sync_make_store()
    ids = [store.submit("m", {"n": n}, owner_id=OWNER).task.task_id for n in range(5)]
    threads: set[str] = set()

    def handler(lease: taskstore_redis.Lease) -> int:
        threads.add(threading.current_thread().name)
        lease.set_variables({"seen": lease.params["n"]})
        return int(lease.params["n"]) + 100

    with worker_thread(store, handler, concurrency=3) as done:
        records = [final(store, task_id) for task_id in ids]
    assert [r.result for r in records] == [100, 101, 102, 103, 104]
    assert [r.variables["seen"] for r in records] == [0, 1, 2, 3, 4]
    assert done.result().completed == 5
    assert threading.main_thread().name not in threads


def test_an_async_handler_also_runs_under_the_blocking_worker(
    sync_make_store: StoreFactory,
) -> None:
    store = sync_make_store()
    task_id = store.submit("m", {"x": "y"}, owner_id=OWNER).task.task_id

    async def handler(lease: taskstore_redis.Lease) -> Any:
        return lease.params

    with worker_thread(store, handler):
        assert final(store, task_id).result == {"x": "y"}


def test_on_stop_the_blocking_worker_releases_what_its_handlers_did_not_finish(
    sync_make_store: StoreFactory,
) -> None:
    store = sync_make_store()
    task_id = store.submit("m", None, owner_id=OWNER).task.task_id
    started = threading.Event()
    leases: list[taskstore_redis.Lease] = []

    def handler(lease: taskstore_redis.Lease) -> str:
        leases.append(lease)
        started.set()
        threading.Event().wait(1.0)  # longer than the grace period
        return "too late"

    with worker_thread(store, handler, grace_s=0.1) as done:
        assert started.wait(BOUND_S)
    assert done.result().released == 1
    record = store.get(task_id, owner_id=OWNER)
    assert record.job is not None and record.job.state == "ready"
    threading.Event().wait(1.2)  # the abandoned handler returns; its result is not written
    assert store.get(task_id, owner_id=OWNER).task.status is TaskStatus.WORKING
    with pytest.raises(LeaseLost):
        leases[0].complete(TaskStatus.COMPLETED, None, "late")
