"""Races between blocking stores that share one storage, run in threads.

The twin of tests/test_concurrency_async.py. A barrier releases all threads at
once, so that their reads and compare-and-sets really interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import taskstore_redis as ts
from taskstore_redis import InvalidTransition, ResourceExhausted, SecurityConfig, TaskStatus

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"
WORKERS = 8


def run_together(jobs: list[Callable[[], str]]) -> list[str]:
    """Run the jobs in threads released together; return their outcomes in order."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], str]) -> str:
        barrier.wait(timeout=10)
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [future.result(timeout=30) for future in futures]


def race_to_complete(stores: list[ts.GenericTaskStore], task_id: str) -> list[str]:
    """Let every store try to complete the task at once; tell who won and who lost."""

    def completer(worker: int) -> Callable[[], str]:
        def complete() -> str:
            try:
                stores[worker].complete_with_result(
                    task_id,
                    TaskStatus.COMPLETED,
                    f"by {worker}",
                    {"worker": worker},
                    owner_id=OWNER,
                )
            except InvalidTransition as error:
                assert (error.from_status, error.to_status) == ("completed", "completed")
                return "lost"
            return "won"

        return complete

    return run_together([completer(worker) for worker in range(len(stores))])


def test_workers_racing_to_complete_a_task_have_exactly_one_winner(
    sync_make_store: StoreFactory,
) -> None:
    stores = [sync_make_store() for _ in range(WORKERS)]
    for _ in range(5):
        task_id = stores[0].create(METHOD, owner_id=OWNER).task.task_id
        outcomes = race_to_complete(stores, task_id)
        winners = [worker for worker, outcome in enumerate(outcomes) if outcome == "won"]
        assert len(winners) == 1
        assert outcomes.count("lost") == WORKERS - 1
        final = stores[0].get(task_id, owner_id=OWNER)
        assert final.result == {"worker": winners[0]}
        assert final.task.status_message == f"by {winners[0]}"
        assert final.version == 2


def test_a_cancel_racing_a_completion_leaves_exactly_one_of_them_applied(
    sync_make_store: StoreFactory,
) -> None:
    canceller, completer = sync_make_store(), sync_make_store()
    task_id = canceller.create(METHOD, owner_id=OWNER).task.task_id

    def cancel() -> str:
        try:
            canceller.cancel(task_id, owner_id=OWNER)
        except InvalidTransition:
            return "lost"
        return "won"

    def complete() -> str:
        try:
            completer.complete_with_result(task_id, TaskStatus.FAILED, None, "oops", owner_id=OWNER)
        except InvalidTransition:
            return "lost"
        return "won"

    cancel_outcome, complete_outcome = run_together([cancel, complete])
    assert sorted([cancel_outcome, complete_outcome]) == ["lost", "won"]
    final = canceller.get(task_id, owner_id=OWNER)
    if cancel_outcome == "won":
        assert (final.task.status, final.result) == (TaskStatus.CANCELLED, None)
    else:
        assert (final.task.status, final.result) == (TaskStatus.FAILED, "oops")


def test_concurrent_set_variables_lose_no_update(sync_make_store: StoreFactory) -> None:
    stores = [sync_make_store() for _ in range(WORKERS)]
    task_id = stores[0].create(METHOD, owner_id=OWNER).task.task_id

    def writer(worker: int) -> Callable[[], str]:
        def write() -> str:
            stores[worker].set_variables(task_id, {f"worker-{worker}": worker}, owner_id=OWNER)
            return "written"

        return write

    assert run_together([writer(worker) for worker in range(WORKERS)]) == ["written"] * WORKERS
    final = stores[0].get(task_id, owner_id=OWNER)
    assert final.variables == {f"worker-{worker}": worker for worker in range(WORKERS)}
    assert final.version == 1 + WORKERS


def test_concurrent_creates_never_exceed_the_owner_quota(sync_make_store: StoreFactory) -> None:
    security = SecurityConfig(max_tasks_per_owner=3)
    stores = [sync_make_store(security=security) for _ in range(WORKERS)]

    def creator(worker: int) -> Callable[[], str]:
        def create() -> str:
            try:
                return stores[worker].create(METHOD, owner_id=OWNER).task.task_id
            except ResourceExhausted:
                return "refused"

        return create

    outcomes = run_together([creator(worker) for worker in range(WORKERS)])
    created = [outcome for outcome in outcomes if outcome != "refused"]
    assert len(created) == 3
    assert outcomes.count("refused") == WORKERS - 3
    listed = stores[0].list(owner_id=OWNER).tasks
    assert sorted(record.task.task_id for record in listed) == sorted(created)


def test_threads_racing_through_one_store_also_have_exactly_one_winner(
    sync_make_store: StoreFactory,
) -> None:
    store = sync_make_store()
    for _ in range(20):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        outcomes = race_to_complete([store] * WORKERS, task_id)
        assert outcomes.count("won") == 1
