"""Flow control on a queue: priorities, pausing and resuming, resubmitting what failed.

Every test runs on every backend of the ``async_make_store`` fixture (memory,
standalone Redis, Redis Cluster) with the public API only; scripts/unasync.py
derives the blocking twin. One owner's tasks share a shard, so their claim order
is the queue's order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidArgument,
    PartialSubmit,
    ResourceExhausted,
    TaskNotFound,
    TaskStatus,
)
from tests.concurrently import async_background, async_together

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"


@pytest.fixture
async def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store()


async def claimed_params(store: ts.GenericTaskStore, count: int, queue: str = "jobs") -> list[Any]:
    """Claim ``count`` tasks one at a time and complete each; their params, in claim order."""
    order = []
    for _ in range(count):
        lease = await store.claim(queue, timeout=5)
        assert lease is not None
        order.append(lease.params)
        await lease.complete(TaskStatus.COMPLETED, None, "done")
    return order


# --- priorities ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_higher_priority_is_claimed_first_and_fifo_within_a_priority(
    store: ts.GenericTaskStore,
) -> None:
    for n, priority in enumerate([0, 9, 5, 9, 0, 5, 1]):
        await store.submit(METHOD, [priority, n], owner_id=OWNER, queue="jobs", priority=priority)
    order = await claimed_params(store, 7)
    assert order == [[9, 1], [9, 3], [5, 2], [5, 5], [1, 6], [0, 0], [0, 4]]


@pytest.mark.anyio
async def test_claim_many_takes_the_highest_priorities(store: ts.GenericTaskStore) -> None:
    for n in range(6):
        await store.submit(METHOD, n, owner_id=OWNER, queue="jobs", priority=n % 3)
    leases = await store.claim_many("jobs", count=4, timeout=5)
    assert sorted(lease.params for lease in leases) == [1, 2, 4, 5]


@pytest.mark.anyio
async def test_a_delayed_task_joins_its_priority_when_due(store: ts.GenericTaskStore) -> None:
    urgent = await store.submit(
        METHOD, "urgent", owner_id=OWNER, queue="jobs", priority=9, delay_ms=200
    )
    await store.submit(METHOD, "first", owner_id=OWNER, queue="jobs")
    await store.submit(METHOD, "second", owner_id=OWNER, queue="jobs")
    assert urgent.job is not None and urgent.job.state == "delayed"
    await anyio.sleep(0.3)  # due now: ahead of the older tasks of a lower priority
    assert await claimed_params(store, 3) == ["urgent", "first", "second"]


@pytest.mark.anyio
async def test_a_released_or_recovered_task_keeps_its_priority(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit(METHOD, "high", owner_id=OWNER, queue="jobs", priority=7)
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None
    await store.submit(METHOD, "low", owner_id=OWNER, queue="jobs")
    await lease.release()
    lost = await store.claim("jobs", timeout=5, lease_ms=200)
    assert lost is not None and lost.params == "high"
    await anyio.sleep(0.3)  # its lease runs out: recovered to the ready set
    assert await claimed_params(store, 2) == ["high", "low"]


@pytest.mark.anyio
async def test_the_priority_is_on_the_record(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, owner_id=OWNER, queue="jobs", priority=4)
    assert record.job is not None and record.job.priority == 4
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.job is not None and read.job.priority == 4
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.task.job is not None
    assert lease.task.job.priority == 4


@pytest.mark.anyio
@pytest.mark.parametrize("priority", [-1, 10, 2.5, True, "1", None])
async def test_a_bad_priority_is_refused_and_writes_nothing(
    store: ts.GenericTaskStore, priority: Any
) -> None:
    with pytest.raises(InvalidArgument, match="priority"):
        await store.submit(METHOD, owner_id=OWNER, queue="jobs", priority=priority)
    assert (await store.queue_stats("jobs")).submitted == 0
    assert (await store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
async def test_queue_stats_count_every_priority(store: ts.GenericTaskStore) -> None:
    for priority in (0, 3, 9):
        await store.submit(METHOD, owner_id=OWNER, queue="jobs", priority=priority)
    await store.submit(METHOD, owner_id=OWNER, queue="jobs", priority=9, delay_ms=60_000)
    stats = await store.queue_stats("jobs")
    assert (stats.ready, stats.delayed) == (3, 1)
    assert stats.oldest_ready_age_ms is not None and stats.oldest_ready_age_ms >= 0


# --- pause and resume ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_paused_queue_leases_nothing_and_a_resumed_one_everything(
    store: ts.GenericTaskStore,
) -> None:
    for n in range(3):
        await store.submit(METHOD, n, owner_id=f"owner-{n}", queue="jobs")
    await store.pause_queue("jobs")
    assert await store.claim("jobs", timeout=0) is None
    assert await store.claim_many("jobs", count=3, timeout=0) == []
    stats = await store.queue_stats("jobs")
    assert (stats.paused, stats.ready, stats.claimed) == (True, 3, 0)
    await store.resume_queue("jobs")
    assert not (await store.queue_stats("jobs")).paused
    leases = await store.claim_many("jobs", count=3, timeout=5)
    while len(leases) < 3:
        leases += await store.claim_many("jobs", count=3 - len(leases), timeout=5)
    assert sorted(lease.params for lease in leases) == [0, 1, 2]


@pytest.mark.anyio
async def test_leases_held_when_a_queue_is_paused_go_on(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, owner_id=OWNER, queue="jobs")
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None
    await store.pause_queue("jobs")
    await lease.renew()
    done = await lease.complete(TaskStatus.COMPLETED, None, "ok")
    assert done.task.status is TaskStatus.COMPLETED
    assert (await store.get(record.task.task_id, owner_id=OWNER)).result == "ok"


@pytest.mark.anyio
async def test_a_waiting_claim_takes_work_once_the_queue_is_resumed(
    store: ts.GenericTaskStore,
) -> None:
    await store.pause_queue("jobs")
    await store.submit(METHOD, "held back", owner_id=OWNER, queue="jobs")
    got: list[ts.Lease | None] = []

    async def claim() -> None:
        got.append(await store.claim("jobs", timeout=10))

    async with async_background() as spawn:
        spawn(claim)
        await anyio.sleep(0.2)
        assert got == []  # still waiting: the queue is paused
        await store.resume_queue("jobs")
    assert len(got) == 1 and got[0] is not None and got[0].params == "held back"


@pytest.mark.anyio
async def test_pausing_twice_or_resuming_a_running_queue_changes_nothing(
    store: ts.GenericTaskStore,
) -> None:
    await store.resume_queue("jobs")
    await store.submit(METHOD, "a", owner_id=OWNER, queue="jobs")
    await store.pause_queue("jobs")
    await store.pause_queue("jobs")
    assert (await store.queue_stats("jobs")).paused
    await store.resume_queue("jobs")
    assert await claimed_params(store, 1) == ["a"]


@pytest.mark.anyio
async def test_a_queue_paused_before_its_first_submit_is_listed_and_stays_paused(
    store: ts.GenericTaskStore,
) -> None:
    await store.pause_queue("later")
    assert "later" in await store.queues()
    await store.submit(METHOD, owner_id=OWNER, queue="later")
    assert await store.claim("later", timeout=0) is None
    assert (await store.queue_stats("later")).paused


@pytest.mark.anyio
async def test_pausing_one_queue_leaves_the_others_running(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, "other", owner_id=OWNER, queue="other")
    await store.pause_queue("jobs")
    assert await claimed_params(store, 1, queue="other") == ["other"]


@pytest.mark.anyio
@pytest.mark.parametrize("queue", ["", "x" * 300, 3])
async def test_pausing_a_bad_queue_name_is_refused(store: ts.GenericTaskStore, queue: Any) -> None:
    with pytest.raises(InvalidArgument):
        await store.pause_queue(queue)
    with pytest.raises(InvalidArgument):
        await store.resume_queue(queue)
    assert await store.queues() == []


# --- resubmit --------------------------------------------------------------------------------


async def failed_task(store: ts.GenericTaskStore) -> ts.TaskRecord:
    await store.submit(
        METHOD, {"n": 1}, owner_id=OWNER, queue="jobs", priority=6, max_attempts=2, ttl_ms=600_000
    )
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None
    return await lease.complete(TaskStatus.FAILED, "it broke", {"error": "it broke"})


@pytest.mark.anyio
async def test_a_failed_task_is_resubmitted_as_a_new_task_that_names_it(
    store: ts.GenericTaskStore,
) -> None:
    failed = await failed_task(store)
    again = await store.resubmit(failed.task.task_id, owner_id=OWNER)
    assert again.task.task_id != failed.task.task_id
    assert again.task.status is TaskStatus.WORKING
    assert (again.request_method, again.params, again.task.ttl) == (METHOD, {"n": 1}, 600_000)
    job = again.job
    assert job is not None
    assert (job.queue, job.priority, job.max_attempts, job.attempt) == ("jobs", 6, 2, 0)
    assert job.resubmitted_from == failed.task.task_id
    read = await store.get(again.task.task_id, owner_id=OWNER)
    assert read.job is not None and read.job.resubmitted_from == failed.task.task_id
    old = await store.get(failed.task.task_id, owner_id=OWNER)
    assert old.task.status is TaskStatus.FAILED  # a terminal status stays final
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and (lease.task_id, lease.params) == (again.task.task_id, {"n": 1})


@pytest.mark.anyio
async def test_a_cancelled_task_is_resubmitted_after_its_delay(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, "p", owner_id=OWNER, queue="jobs")
    await store.cancel(record.task.task_id, owner_id=OWNER)
    again = await store.resubmit(record.task.task_id, owner_id=OWNER, delay_ms=60_000)
    assert again.job is not None and again.job.state == "delayed"
    assert await store.claim("jobs", timeout=0) is None
    assert (await store.queue_stats("jobs")).delayed == 1


@pytest.mark.anyio
async def test_only_a_failed_or_cancelled_queued_task_can_be_resubmitted(
    store: ts.GenericTaskStore,
) -> None:
    working = await store.submit(METHOD, owner_id=OWNER, queue="jobs")
    created = await store.create(METHOD, owner_id=OWNER)
    await store.update_status(created.task.task_id, TaskStatus.FAILED, owner_id=OWNER)
    with pytest.raises(InvalidArgument, match="working"):
        await store.resubmit(working.task.task_id, owner_id=OWNER)
    with pytest.raises(InvalidArgument, match="not submitted"):
        await store.resubmit(created.task.task_id, owner_id=OWNER)
    with pytest.raises(TaskNotFound):
        await store.resubmit(working.task.task_id, owner_id="mallory")
    with pytest.raises(InvalidArgument, match="delay_ms"):
        await store.resubmit(working.task.task_id, owner_id=OWNER, delay_ms=-1)
    assert (await store.queue_stats("jobs")).submitted == 1
    assert len((await store.list(owner_id=OWNER)).tasks) == 2


# --- dedup keys and debounce -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_dedup_key_returns_the_live_task_instead_of_a_new_one(
    store: ts.GenericTaskStore,
) -> None:
    first = await store.submit(METHOD, 1, owner_id=OWNER, queue="jobs", dedup_key="k")
    again = await store.submit(METHOD, 2, owner_id=OWNER, queue="jobs", dedup_key="k")
    assert again.task.task_id == first.task.task_id
    assert again.params == 1  # without debounce the first task is kept as it is
    assert (await store.queue_stats("jobs")).submitted == 1
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None
    leased = await store.submit(METHOD, 3, owner_id=OWNER, queue="jobs", dedup_key="k")
    assert leased.task.task_id == first.task.task_id  # still live while leased
    await lease.complete(TaskStatus.COMPLETED, None, "done")
    after = await store.submit(METHOD, 4, owner_id=OWNER, queue="jobs", dedup_key="k")
    assert after.task.task_id != first.task.task_id and after.params == 4


@pytest.mark.anyio
async def test_a_dedup_key_belongs_to_one_owner_and_one_queue(store: ts.GenericTaskStore) -> None:
    ids = {
        (await store.submit(METHOD, owner_id=owner, queue=queue, dedup_key="k")).task.task_id
        for owner in (OWNER, "bob")
        for queue in ("jobs", "other")
    }
    assert len(ids) == 4


@pytest.mark.anyio
async def test_an_ended_holder_frees_its_dedup_key(store: ts.GenericTaskStore) -> None:
    first = await store.submit(METHOD, owner_id=OWNER, queue="jobs", dedup_key="k")
    await store.cancel(first.task.task_id, owner_id=OWNER)
    second = await store.submit(METHOD, owner_id=OWNER, queue="jobs", dedup_key="k")
    assert second.task.task_id != first.task.task_id
    assert second.task.status is TaskStatus.WORKING


@pytest.mark.anyio
async def test_concurrent_submits_with_one_dedup_key_make_one_task(
    store: ts.GenericTaskStore,
) -> None:
    async def submit(n: int) -> str:
        record = await store.submit(METHOD, n, owner_id=OWNER, queue="jobs", dedup_key="k")
        return record.task.task_id

    ids = await async_together([functools.partial(submit, n) for n in range(8)])
    assert len(set(ids)) == 1
    assert (await store.queue_stats("jobs")).submitted == 1


@pytest.mark.anyio
async def test_debounce_runs_once_after_the_burst_with_the_last_params(
    store: ts.GenericTaskStore,
) -> None:
    ids = set()
    ready_times = []
    for n in range(5):
        record = await store.submit(
            METHOD, n, owner_id=OWNER, queue="jobs", dedup_key="k", debounce_ms=300
        )
        ids.add(record.task.task_id)
        assert record.job is not None and record.job.ready_at is not None
        ready_times.append(record.job.ready_at)
        await anyio.sleep(0.01)
    assert len(ids) == 1
    assert ready_times == sorted(set(ready_times))  # each submit pushed it on
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None and lease.params == 4 and lease.task_id in ids
    stats = await store.queue_stats("jobs")
    assert (stats.submitted, stats.ready, stats.delayed) == (1, 0, 0)
    later = await store.submit(
        METHOD, 5, owner_id=OWNER, queue="jobs", dedup_key="k", debounce_ms=0
    )
    assert later.task.task_id not in ids  # the held task is leased: a new one is made


@pytest.mark.anyio
async def test_a_debounce_keeps_the_priority_and_wakes_no_one_early(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit(
        METHOD, "a", owner_id=OWNER, queue="jobs", dedup_key="k", debounce_ms=200, priority=5
    )
    await store.submit(METHOD, "low", owner_id=OWNER, queue="jobs")
    await store.submit(
        METHOD, "b", owner_id=OWNER, queue="jobs", dedup_key="k", debounce_ms=200, priority=0
    )
    await anyio.sleep(0.3)
    assert await claimed_params(store, 2) == ["b", "low"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"dedup_key": ""},
        {"dedup_key": 5},
        {"debounce_ms": 100},
        {"dedup_key": "k", "debounce_ms": -1},
        {"dedup_key": "k", "debounce_ms": 1.5},
    ],
)
async def test_a_bad_dedup_key_or_debounce_is_refused_and_writes_nothing(
    store: ts.GenericTaskStore, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        await store.submit(METHOD, owner_id=OWNER, queue="jobs", **kwargs)
    assert (await store.queue_stats("jobs")).submitted == 0


# --- submit_many -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_submit_many_submits_every_item_in_order(async_make_store: StoreFactory) -> None:
    store = async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=None))
    records = await store.submit_many(
        METHOD, list(range(1200)), owner_id=OWNER, queue="jobs", priority=2, max_attempts=5
    )
    assert [record.params for record in records] == list(range(1200))
    assert len({record.task.task_id for record in records}) == 1200
    assert all(
        record.job is not None and (record.job.priority, record.job.max_attempts) == (2, 5)
        for record in records
    )
    read = await store.get(records[700].task.task_id, owner_id=OWNER)
    assert read.params == 700
    stats = await store.queue_stats("jobs")
    assert (stats.submitted, stats.ready) == (1200, 1200)
    assert await claimed_params(store, 3) == [0, 1, 2]


@pytest.mark.anyio
async def test_submit_many_of_ten_thousand_across_64_owners(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=None))
    owners = [f"tenant-{n}" for n in range(64)]
    sizes = [10_000 // 64 + (1 if n < 10_000 % 64 else 0) for n in range(64)]
    for owner, size in zip(owners, sizes, strict=True):
        records = await store.submit_many(METHOD, [owner] * size, owner_id=owner, queue="bulk")
        assert len(records) == size
    stats = await store.queue_stats("bulk")
    assert (stats.submitted, stats.ready) == (10_000, 10_000)
    page = await store.list(owner_id=owners[-1], limit=1000)
    assert len(page.tasks) == sizes[-1]


@pytest.mark.anyio
async def test_submit_many_with_a_bad_item_names_it_and_writes_nothing(
    store: ts.GenericTaskStore,
) -> None:
    with pytest.raises(InvalidArgument, match=r"params\[2\]"):
        await store.submit_many(METHOD, [1, 2, {"x": float("nan")}, 4], owner_id=OWNER)
    with pytest.raises(InvalidArgument, match="params_list"):
        await store.submit_many(METHOD, "abc", owner_id=OWNER)
    assert (await store.queue_stats()).submitted == 0
    assert await store.submit_many(METHOD, [], owner_id=OWNER) == []


@pytest.mark.anyio
async def test_submit_many_past_the_quota_reports_each_item(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=5))
    with pytest.raises(PartialSubmit) as raised:
        await store.submit_many(METHOD, list(range(8)), owner_id=OWNER, queue="jobs")
    results = raised.value.results
    assert raised.value.submitted == 5
    assert [result.params for result in results[:5] if isinstance(result, ts.TaskRecord)] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert all(isinstance(result, ResourceExhausted) for result in results[5:])
    assert (await store.queue_stats("jobs")).submitted == 5
