"""Workflows: tasks submitted ``after`` others wait for them, read their results, and are
cancelled when one of them does not complete.

Every test runs on every backend of the ``async_make_store`` fixture (memory,
standalone Redis, Redis Cluster) with the public API only; scripts/unasync.py
derives the blocking twin.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import InvalidArgument, TaskNotFound, TaskStatus

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"


@pytest.fixture
async def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store()


async def run_next(
    store: ts.GenericTaskStore, status: TaskStatus = TaskStatus.COMPLETED, queue: str = "jobs"
) -> ts.Lease:
    """Claim the next task of ``queue`` and end it with ``status``, its result its params."""
    lease = await store.claim(queue, timeout=5)
    assert lease is not None
    await lease.complete(status, None, {"from": lease.params})
    return lease


async def state_of(store: ts.GenericTaskStore, task_id: str) -> str:
    record = await store.get(task_id, owner_id=OWNER)
    assert record.job is not None
    return record.job.state


# --- waiting and release ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_task_waits_for_its_parent_and_runs_once_it_completes(
    store: ts.GenericTaskStore,
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    assert child.job is not None
    assert child.job.state == "waiting"
    assert child.job.parents == (parent.task.task_id,)
    assert (await store.queue_stats("jobs")).waiting == 1
    assert (await run_next(store)).params == "a"
    assert await state_of(store, child.task.task_id) == "ready"
    assert (await store.queue_stats("jobs")).waiting == 0
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.params == "b"
    assert await lease.parent_results() == {parent.task.task_id: {"from": "a"}}


@pytest.mark.anyio
async def test_a_waiting_task_is_not_claimable(store: ts.GenericTaskStore) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="slow")
    await store.submit(METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id])
    assert await store.claim("jobs", timeout=0.2) is None


@pytest.mark.anyio
async def test_a_diamond_runs_its_last_task_once_after_both_branches_and_it_reads_both(
    store: ts.GenericTaskStore,
) -> None:
    a = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    b = await store.submit(METHOD, "b", owner_id=OWNER, queue="jobs", after=[a.task.task_id])
    c = await store.submit(METHOD, "c", owner_id=OWNER, queue="jobs", after=[a.task.task_id])
    d = await store.submit(
        METHOD, "d", owner_id=OWNER, queue="jobs", after=[b.task.task_id, c.task.task_id]
    )
    await run_next(store)  # a
    first = await run_next(store)  # b or c
    assert first.params in ("b", "c")
    assert await state_of(store, d.task.task_id) == "waiting"
    second = await run_next(store)
    assert {first.params, second.params} == {"b", "c"}
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.params == "d"
    assert await lease.parent_results() == {
        b.task.task_id: {"from": "b"},
        c.task.task_id: {"from": "c"},
    }
    await lease.complete(TaskStatus.COMPLETED, None, "done")
    assert await store.claim("jobs", timeout=0.2) is None  # d ran once


@pytest.mark.anyio
async def test_a_task_after_a_batch_runs_once_all_of_it_completed(
    store: ts.GenericTaskStore,
) -> None:
    batch = await store.submit_many(METHOD, list(range(5)), owner_id=OWNER, queue="jobs")
    fan_in = await store.submit(
        METHOD, "sum", owner_id=OWNER, queue="sums", after=[task.task.task_id for task in batch]
    )
    for _ in range(4):
        await run_next(store)
    assert await state_of(store, fan_in.task.task_id) == "waiting"
    await run_next(store)
    lease = await store.claim("sums", timeout=5)
    assert lease is not None
    results = await lease.parent_results()
    assert list(results) == [task.task.task_id for task in batch]
    assert sorted(result["from"] for result in results.values()) == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_a_parent_completed_before_the_submit_counts_as_completed(
    store: ts.GenericTaskStore,
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    await run_next(store)
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    assert child.job is not None and child.job.state == "ready"
    assert (await run_next(store)).params == "b"


# --- a parent that does not complete ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("ending", [TaskStatus.FAILED, TaskStatus.CANCELLED])
async def test_a_parent_that_does_not_complete_cancels_its_children_and_theirs(
    store: ts.GenericTaskStore, ending: TaskStatus
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    grandchild = await store.submit(
        METHOD, "c", owner_id=OWNER, queue="jobs", after=[child.task.task_id]
    )
    if ending is TaskStatus.FAILED:
        await run_next(store, TaskStatus.FAILED)
    else:
        await store.cancel(parent.task.task_id, owner_id=OWNER)
    for task, named in ((child, parent), (grandchild, child)):
        record = await store.get(task.task.task_id, owner_id=OWNER)
        assert record.task.status is TaskStatus.CANCELLED
        assert record.task.status_message == (
            f"parent task {named.task.task_id} ended without completing"
        )
        assert record.job is not None and record.job.state == "done"
    stats = await store.queue_stats("jobs")
    assert stats.cancelled == (3 if ending is TaskStatus.CANCELLED else 2)
    assert await store.claim("jobs", timeout=0.2) is None


@pytest.mark.anyio
async def test_a_task_after_a_parent_that_already_failed_is_cancelled_at_once(
    store: ts.GenericTaskStore,
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    await run_next(store, TaskStatus.FAILED)
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    assert child.task.status is TaskStatus.CANCELLED
    assert (
        child.task.status_message == f"parent task {parent.task.task_id} ended without completing"
    )
    assert await store.claim("jobs", timeout=0.2) is None


@pytest.mark.anyio
async def test_on_parent_failure_run_runs_it_whatever_its_parents_ended_as(
    store: ts.GenericTaskStore,
) -> None:
    good = await store.submit(METHOD, "good", owner_id=OWNER, queue="jobs")
    bad = await store.submit(METHOD, "bad", owner_id=OWNER, queue="jobs")
    cleanup = await store.submit(
        METHOD,
        "cleanup",
        owner_id=OWNER,
        queue="jobs",
        after=[good.task.task_id, bad.task.task_id],
        on_parent_failure="run",
    )
    await run_next(store)
    await run_next(store, TaskStatus.FAILED)
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.task_id == cleanup.task.task_id
    assert await lease.parent_results() == {
        good.task.task_id: {"from": "good"},
        bad.task.task_id: {"from": "bad"},
    }


@pytest.mark.anyio
async def test_cancelling_a_waiting_task_leaves_its_parent_alone(
    store: ts.GenericTaskStore,
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    await store.cancel(child.task.task_id, owner_id=OWNER)
    assert (await run_next(store)).params == "a"
    record = await store.get(child.task.task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.CANCELLED
    assert record.task.status_message is None
    assert await store.claim("jobs", timeout=0.2) is None


@pytest.mark.anyio
async def test_a_parent_deleted_before_it_ended_cancels_what_waits_for_it(
    store: ts.GenericTaskStore,
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    anyway = await store.submit(
        METHOD,
        "c",
        owner_id=OWNER,
        queue="jobs",
        after=[parent.task.task_id],
        on_parent_failure="run",
    )
    await store.delete(parent.task.task_id, owner_id=OWNER)
    record = await store.get(child.task.task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.CANCELLED
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.task_id == anyway.task.task_id
    assert await lease.parent_results() == {parent.task.task_id: None}


@pytest.mark.anyio
async def test_a_waiting_task_deleted_leaves_its_parent_to_run_alone(
    store: ts.GenericTaskStore,
) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    await store.delete(child.task.task_id, owner_id=OWNER)
    assert (await store.queue_stats("jobs")).waiting == 0
    assert (await run_next(store)).params == "a"
    assert await store.claim("jobs", timeout=0.2) is None
    assert (await store.queue_stats("jobs")).completed == 1


# --- refused at submit -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_parents_that_do_not_exist_or_belong_to_another_owner_are_refused_writing_nothing(
    store: ts.GenericTaskStore,
) -> None:
    theirs = await store.submit(METHOD, "x", owner_id="bob", queue="jobs")
    mine = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    plain = await store.create(METHOD, owner_id=OWNER)
    for parent in (theirs.task.task_id, "no-such-task", plain.task.task_id):
        with pytest.raises(InvalidArgument, match="no live task this owner submitted"):
            await store.submit(
                METHOD, "b", owner_id=OWNER, queue="jobs", after=[mine.task.task_id, parent]
            )
    listed = {record.task.task_id for record in (await store.list(owner_id=OWNER)).tasks}
    assert listed == {mine.task.task_id, plain.task.task_id}
    assert (await store.queue_stats("jobs")).submitted == 2


@pytest.mark.anyio
async def test_a_cycle_cannot_form_a_task_can_only_wait_for_tasks_that_exist_before_it(
    store: ts.GenericTaskStore,
) -> None:
    a = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    b = await store.submit(METHOD, "b", owner_id=OWNER, queue="jobs", after=[a.task.task_id])
    # a's parents were fixed when it was submitted; a deleted task cannot be named either
    await store.delete(b.task.task_id, owner_id=OWNER)
    with pytest.raises(InvalidArgument, match="no live task"):
        await store.submit(METHOD, "c", owner_id=OWNER, queue="jobs", after=[b.task.task_id])
    assert (await store.get(a.task.task_id, owner_id=OWNER)).job.parents == ()  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"after": "abc"}, "after must be a list"),
        ({"after": ["x"], "delay_ms": 100}, "no delay_ms"),
        ({"after": [], "on_parent_failure": "ignore"}, "on_parent_failure"),
        ({"after": [""]}, "after"),
    ],
)
async def test_bad_dependency_arguments_are_refused_writing_nothing(
    store: ts.GenericTaskStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await store.submit(METHOD, "b", owner_id=OWNER, queue="jobs", **kwargs)  # type: ignore[arg-type]
    assert (await store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
async def test_a_task_with_no_parents_reads_no_parent_results(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None
    assert await lease.parent_results() == {}


@pytest.mark.anyio
async def test_a_parent_deleted_since_reads_as_no_result(store: ts.GenericTaskStore) -> None:
    parent = await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    child = await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", after=[parent.task.task_id]
    )
    await run_next(store)
    await store.delete(parent.task.task_id, owner_id=OWNER)
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.task_id == child.task.task_id
    assert await lease.parent_results() == {parent.task.task_id: None}
    with pytest.raises(TaskNotFound):
        await store.get(parent.task.task_id, owner_id=OWNER)
