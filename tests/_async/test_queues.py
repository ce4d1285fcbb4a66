"""The contract of the work queues: submit, claim, fenced lease writes, release, recovery.

Every test runs on every backend of the ``async_make_store`` fixture (memory,
standalone Redis, Redis Cluster) with the public API only; scripts/unasync.py
derives the blocking twin. Leases are short (a few hundred ms) and the tests
wait on real time, never asserting how long anything took.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidArgument,
    InvalidLeaseToken,
    LeaseLost,
    ResourceExhausted,
    SecurityConfig,
    StoreConfig,
    TaskStatus,
    VariableSizeExceeded,
)

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"
SHORT_LEASE_MS = 300


async def sleep_past(moment: datetime, extra_ms: int = 50) -> None:
    """Sleep until ``extra_ms`` after ``moment``."""
    left = (moment - datetime.now(UTC)).total_seconds() + extra_ms / 1000
    await anyio.sleep(max(0.0, left))


async def claim_one(store: ts.GenericTaskStore, queue: str = "default", **kw: Any) -> ts.Lease:
    lease = await store.claim(queue, timeout=5, **kw)
    assert lease is not None
    return lease


@pytest.fixture
async def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store()


# --- submit ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_submit_creates_a_working_task_with_its_params_and_queues_it(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, {"n": 1}, owner_id=OWNER, queue="jobs")
    assert record.task.status is TaskStatus.WORKING
    assert record.params == {"n": 1}
    assert record.job is not None and record.job.queue == "jobs"
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.params == {"n": 1}
    assert read.job is not None
    assert (read.job.state, read.job.attempt, read.job.max_attempts) == ("ready", 0, 3)
    assert "params" not in read.to_wire_task() and "job" not in read.to_wire_task()
    assert await store.queues() == ["jobs"]


@pytest.mark.anyio
async def test_a_created_task_has_no_job(store: ts.GenericTaskStore) -> None:
    record = await store.create(METHOD, owner_id=OWNER)
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.job is None and read.params is None


@pytest.mark.anyio
async def test_submit_counts_against_the_quota_and_enqueues_nothing_beyond_it(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=2))
    await store.submit(METHOD, 1, owner_id=OWNER)
    await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(ResourceExhausted):
        await store.submit(METHOD, 2, owner_id=OWNER)
    stats = await store.queue_stats()
    assert (stats.submitted, stats.ready) == (1, 1)
    first = await claim_one(store)
    assert first.params == 1
    assert await store.claim(timeout=0) is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"params": float("nan")}, id="params-not-json"),
        pytest.param({"params": {1: 2}}, id="params-non-str-key"),
        pytest.param({"delay_ms": -1}, id="negative-delay"),
        pytest.param({"delay_ms": 1.5}, id="float-delay"),
        pytest.param({"max_attempts": 0}, id="zero-attempts"),
        pytest.param({"max_attempts": "3"}, id="str-attempts"),
        pytest.param({"queue": ""}, id="empty-queue"),
        pytest.param({"queue": 5}, id="queue-not-str"),
        pytest.param({"ttl_ms": -1}, id="negative-ttl"),
    ],
)
async def test_bad_submit_input_raises_invalid_argument_and_writes_nothing(
    store: ts.GenericTaskStore, kwargs: dict[str, Any]
) -> None:
    given = dict(kwargs)  # the parameter is shared by every backend's run
    params = given.pop("params", None)
    with pytest.raises(InvalidArgument):
        await store.submit(METHOD, params, owner_id=OWNER, **given)
    assert (await store.list(owner_id=OWNER)).tasks == []
    assert await store.queues() == []


@pytest.mark.anyio
async def test_params_above_the_size_limit_are_refused(async_make_store: StoreFactory) -> None:
    store = async_make_store(StoreConfig(max_params_bytes=20))
    with pytest.raises(VariableSizeExceeded):
        await store.submit(METHOD, "x" * 30, owner_id=OWNER)
    assert (await store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"lease_ms": 0}, id="zero-lease"),
        pytest.param({"lease_ms": -5}, id="negative-lease"),
        pytest.param({"timeout": -1}, id="negative-timeout"),
        pytest.param({"count": 0}, id="zero-count"),
        pytest.param({"queue": ""}, id="empty-queue"),
    ],
)
async def test_bad_claim_input_raises_invalid_argument_and_claims_nothing(
    store: ts.GenericTaskStore, kwargs: dict[str, Any]
) -> None:
    await store.submit(METHOD, owner_id=OWNER)
    args = {"queue": "default", "count": 1, **kwargs}
    with pytest.raises(InvalidArgument):
        await store.claim_many(args.pop("queue"), args.pop("count"), **args)
    assert (await store.queue_stats()).claimed == 0


# --- claim -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_claim_on_an_empty_queue_with_timeout_zero_returns_none(
    store: ts.GenericTaskStore,
) -> None:
    assert await store.claim("nothing", timeout=0) is None
    assert await store.claim_many("nothing", 5, timeout=0) == []
    assert await store.claim("nothing", timeout=0.2) is None


@pytest.mark.anyio
async def test_claims_take_the_oldest_task_of_an_owner_first(store: ts.GenericTaskStore) -> None:
    ids = []
    for n in range(4):
        ids.append((await store.submit(METHOD, n, owner_id=OWNER)).task.task_id)
        await anyio.sleep(0.003)  # distinct submission times
    claimed = [(await claim_one(store)).task_id for _ in ids]
    assert claimed == ids


@pytest.mark.anyio
async def test_any_queue_name_works_and_queues_stay_apart(store: ts.GenericTaskStore) -> None:
    hostile = "}{:* q/r%41"
    record = await store.submit(METHOD, "h", owner_id="}{owner", queue=hostile)
    await store.submit(METHOD, "other", owner_id=OWNER, queue="other")
    lease = await claim_one(store, hostile)
    assert (lease.task_id, lease.owner_id, lease.params) == (record.task.task_id, "}{owner", "h")
    assert await store.claim(hostile, timeout=0) is None
    assert await store.queues() == sorted([hostile, "other"])


@pytest.mark.anyio
async def test_claim_many_takes_up_to_count(store: ts.GenericTaskStore) -> None:
    for n in range(5):
        await store.submit(METHOD, n, owner_id=f"owner-{n}")
    leases = await store.claim_many("default", 3, timeout=5)
    assert 1 <= len(leases) <= 3
    while len(leases) < 5:
        more = await store.claim_many("default", 5, timeout=0)
        assert more, "work was left but nothing was claimed"
        leases += more
    assert sorted(lease.params for lease in leases) == [0, 1, 2, 3, 4]
    assert await store.claim(timeout=0) is None


@pytest.mark.anyio
async def test_a_lease_carries_the_task_and_its_terms(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, {"a": [1]}, owner_id=OWNER, queue="q")
    lease = await claim_one(store, "q", lease_ms=SHORT_LEASE_MS, worker_id="w1")
    assert (lease.task_id, lease.owner_id, lease.queue) == (record.task.task_id, OWNER, "q")
    assert (lease.params, lease.attempt, lease.worker_id) == ({"a": [1]}, 1, "w1")
    assert lease.token >= 1
    assert lease.expires_at.tzinfo is not None
    assert lease.task.job is not None and lease.task.job.state == "leased"


@pytest.mark.anyio
async def test_a_delayed_task_is_claimable_only_after_its_delay(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, owner_id=OWNER, delay_ms=400)
    job = (await store.get(record.task.task_id, owner_id=OWNER)).job
    assert job is not None and job.state == "delayed"
    assert await store.claim(timeout=0) is None
    assert (await store.queue_stats()).delayed == 1
    lease = await store.claim(timeout=5)
    assert lease is not None and lease.task_id == record.task.task_id


@pytest.mark.anyio
async def test_tokens_increase_with_every_claim_of_a_task(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, owner_id=OWNER)
    first = await claim_one(store)
    await first.release()
    second = await claim_one(store)
    assert second.task_id == first.task_id
    assert second.token > first.token
    assert second.attempt == first.attempt + 1


# --- renew, expiry, reclaim ------------------------------------------------------------------


@pytest.mark.anyio
async def test_renew_extends_the_lease(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store, lease_ms=1000)  # held until the renewal, even on a busy machine
    before = lease.expires_at
    await lease.renew(lease_ms=5000)
    assert lease.expires_at > before
    await sleep_past(before)
    assert await store.claim(timeout=0) is None  # still held
    done = await lease.complete(TaskStatus.COMPLETED, None, "ok")
    assert done.task.status is TaskStatus.COMPLETED


@pytest.mark.anyio
async def test_an_expired_lease_is_reclaimed_and_the_old_holder_writes_nothing(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit(METHOD, "p", owner_id=OWNER)
    old = await claim_one(store, lease_ms=SHORT_LEASE_MS)
    await sleep_past(old.expires_at)
    with pytest.raises(LeaseLost) as expired:
        await old.renew()
    assert expired.value.reason == "expired"
    new = await claim_one(store, lease_ms=5000)
    assert (new.task_id, new.attempt, new.params) == (old.task_id, 2, "p")
    assert new.token > old.token
    before = await store.get(old.task_id, owner_id=OWNER)
    writes: list[Callable[[], Any]] = [
        lambda: old.renew(),
        lambda: old.complete(TaskStatus.COMPLETED, None, "stale"),
        lambda: old.set_variables({"stale": True}),
        lambda: old.update_status(TaskStatus.INPUT_REQUIRED),
        lambda: old.set_status_message("stale progress"),
        lambda: old.release(),
    ]
    for write in writes:
        with pytest.raises(LeaseLost) as lost:
            await write()
        assert lost.value.reason == "reclaimed"
    after = await store.get(old.task_id, owner_id=OWNER)
    assert after.version == before.version
    assert after.variables == {} and after.task.status is TaskStatus.WORKING
    assert after.job is not None and after.job.token == new.token


@pytest.mark.anyio
async def test_a_holder_reports_progress_in_the_status_message_keeping_the_status(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store, lease_ms=5000)
    noted = await lease.set_status_message("3 of 10 done")
    assert (noted.task.status, noted.task.status_message) == (TaskStatus.WORKING, "3 of 10 done")
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.task.status_message == "3 of 10 done"
    assert read.job is not None and read.job.state == "leased"


@pytest.mark.anyio
async def test_a_waiting_claim_takes_a_task_whose_lease_runs_out_meanwhile(
    async_make_store: StoreFactory,
) -> None:
    first, second = async_make_store(), async_make_store()
    await first.submit(METHOD, "again", owner_id=OWNER)
    lost = await claim_one(first, lease_ms=SHORT_LEASE_MS)
    retried = await second.claim(timeout=10)  # no notice comes: it wakes at the deadline
    assert retried is not None
    assert (retried.task_id, retried.attempt, retried.params) == (lost.task_id, 2, "again")


@pytest.mark.anyio
async def test_a_task_released_after_its_last_attempt_fails_at_the_next_claim(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, owner_id=OWNER, max_attempts=1)
    lease = await claim_one(store)
    await lease.release()
    assert await store.claim(timeout=0) is None
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.task.status is TaskStatus.FAILED
    assert read.task.status_message is not None and "released" in read.task.status_message
    assert (await store.queue_stats()).given_up == 1


@pytest.mark.anyio
async def test_a_release_handing_the_attempt_back_lets_the_last_attempt_be_claimed_again(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, "p", owner_id=OWNER, max_attempts=1)
    lease = await claim_one(store)
    await lease.release(count_attempt=False)
    job = (await store.get(record.task.task_id, owner_id=OWNER)).job
    assert job is not None and (job.state, job.attempt) == ("ready", 0)
    again = await claim_one(store)
    assert (again.task_id, again.attempt, again.params) == (lease.task_id, 1, "p")
    done = await again.complete(TaskStatus.COMPLETED, None, "ok")
    assert done.task.status is TaskStatus.COMPLETED
    stats = await store.queue_stats()
    assert (stats.released, stats.given_up) == (1, 0)


@pytest.mark.anyio
async def test_a_cancel_by_a_client_ends_the_lease(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store)
    await store.cancel(record.task.task_id, owner_id=OWNER)
    with pytest.raises(LeaseLost) as lost:
        await lease.renew()
    assert lost.value.reason == "cancelled"
    with pytest.raises(LeaseLost):
        await lease.complete(TaskStatus.COMPLETED, None, 1)
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.task.status is TaskStatus.CANCELLED
    assert read.job is not None and read.job.state == "done"
    stats = await store.queue_stats()
    assert (stats.leased, stats.cancelled) == (0, 1)


@pytest.mark.anyio
async def test_a_cancelled_queued_task_is_never_claimed(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, owner_id=OWNER)
    await store.cancel(record.task.task_id, owner_id=OWNER)
    assert await store.claim(timeout=0) is None


@pytest.mark.anyio
async def test_the_holder_completes_once_and_its_lease_ends(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store)
    done = await lease.complete(TaskStatus.COMPLETED, "done", {"r": 1})
    assert done.result == {"r": 1}
    assert done.job is not None and done.job.state == "done"
    with pytest.raises(LeaseLost) as lost:
        await lease.renew()
    assert lost.value.reason == "completed"
    stats = await store.queue_stats()
    assert (stats.completed, stats.leased, stats.ready) == (1, 0, 0)


@pytest.mark.anyio
async def test_recover_leases_sweeps_without_any_claim(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, owner_id=OWNER, queue="a")
    lost = await store.submit(METHOD, owner_id=OWNER, queue="b", max_attempts=1)
    first = await claim_one(store, "a", lease_ms=SHORT_LEASE_MS)
    second = await claim_one(store, "b", lease_ms=SHORT_LEASE_MS)
    await sleep_past(max(first.expires_at, second.expires_at))
    assert await store.recover_leases() == 2
    job = (await store.get(first.task_id, owner_id=OWNER)).job
    assert job is not None and job.state == "ready"
    failed = await store.get(lost.task.task_id, owner_id=OWNER)
    assert failed.task.status is TaskStatus.FAILED
    assert (await store.queue_stats("a")).recovered == 1
    assert await store.recover_leases("a") == 0


# --- release, fencing, non-holders -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_released_task_comes_back_after_its_delay_with_the_same_params(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit(METHOD, {"p": 1}, owner_id=OWNER)
    lease = await claim_one(store)
    await lease.release(delay_ms=300)
    job = (await store.get(lease.task_id, owner_id=OWNER)).job
    assert job is not None and (job.state, job.attempt) == ("delayed", 1)
    assert await store.claim(timeout=0) is None
    again = await claim_one(store)
    assert (again.task_id, again.params, again.attempt) == (lease.task_id, {"p": 1}, 2)
    assert (await store.queue_stats()).released == 1


@pytest.mark.anyio
async def test_a_forged_token_is_refused_with_a_typed_error(store: ts.GenericTaskStore) -> None:
    await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store)
    forged = ts.Lease(
        store,
        lease.task,
        queue=lease.queue,
        token=lease.token + 7,
        attempt=lease.attempt,
        expires_at_ms=lease.expires_at.timestamp() * 1000,
        worker_id=None,
    )
    with pytest.raises(InvalidLeaseToken):
        await forged.complete(TaskStatus.COMPLETED, None, 1)
    with pytest.raises(InvalidLeaseToken):
        await forged.renew()
    not_int = ts.Lease(
        store,
        lease.task,
        queue=lease.queue,
        token="1",  # type: ignore[arg-type]
        attempt=1,
        expires_at_ms=0,
        worker_id=None,
    )
    with pytest.raises(InvalidLeaseToken):
        await not_int.set_variables({"x": 1})
    read = await store.get(lease.task_id, owner_id=OWNER)
    assert read.task.status is TaskStatus.WORKING and read.variables == {}


@pytest.mark.anyio
async def test_a_non_holder_may_answer_with_variables_while_the_task_is_leased(
    store: ts.GenericTaskStore,
) -> None:
    record = await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store)
    await lease.update_status(TaskStatus.INPUT_REQUIRED, "which file?")
    await store.set_variables(record.task.task_id, {"answer": "a.txt"}, owner_id=OWNER)
    await store.update_status(record.task.task_id, TaskStatus.WORKING, owner_id=OWNER)
    await lease.renew()
    done = await lease.set_variables({"progress": 1})
    assert done.variables == {"answer": "a.txt", "progress": 1}


@pytest.mark.anyio
async def test_get_shows_the_job_state_worker_and_attempt(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, owner_id=OWNER)
    lease = await claim_one(store, worker_id="worker-7", lease_ms=5000)
    job = (await store.get(record.task.task_id, owner_id=OWNER)).job
    assert job is not None
    assert (job.state, job.worker_id, job.attempt, job.token) == (
        "leased",
        "worker-7",
        1,
        lease.token,
    )
    assert job.lease_expires_at == lease.expires_at


@pytest.mark.anyio
async def test_a_list_page_shows_the_job_part_as_get_does(store: ts.GenericTaskStore) -> None:
    queued = await store.submit(METHOD, {"n": 1}, owner_id=OWNER)
    leased = await store.submit(METHOD, {"n": 2}, owner_id=OWNER)
    plain = await store.create(METHOD, owner_id=OWNER)
    lease = await claim_one(store, worker_id="worker-3", lease_ms=5000)
    assert lease.task_id == queued.task.task_id  # oldest first
    page = await store.list(owner_id=OWNER)
    listed = {record.task.task_id: record for record in page.tasks}
    for task_id in (queued.task.task_id, leased.task.task_id, plain.task.task_id):
        read = await store.get(task_id, owner_id=OWNER)
        assert (listed[task_id].job, listed[task_id].params) == (read.job, read.params)
    job = listed[queued.task.task_id].job
    assert job is not None and (job.state, job.worker_id) == ("leased", "worker-3")
    assert listed[leased.task.task_id].params == {"n": 2}
    assert listed[plain.task.task_id].job is None


@pytest.mark.anyio
async def test_renew_leases_reports_per_lease(store: ts.GenericTaskStore) -> None:
    for n in range(3):
        await store.submit(METHOD, n, owner_id=f"owner-{n}")
    leases = [await claim_one(store, lease_ms=5000) for _ in range(3)]
    await store.cancel(leases[1].task_id, owner_id=leases[1].owner_id)
    outcomes = await store.renew_leases(leases, lease_ms=10_000)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], LeaseLost) and outcomes[1].reason == "cancelled"


@pytest.mark.anyio
async def test_queue_stats_count_what_happened(store: ts.GenericTaskStore) -> None:
    for n in range(3):
        await store.submit(METHOD, n, owner_id=OWNER, queue="s")
    await store.submit(METHOD, owner_id=OWNER, queue="s", delay_ms=60_000)
    lease = await claim_one(store, "s")
    await lease.complete(TaskStatus.FAILED, "no", {"error": "no"})
    stats = await store.queue_stats("s")
    assert (stats.ready, stats.delayed, stats.leased) == (2, 1, 0)
    assert (stats.submitted, stats.claimed, stats.failed) == (4, 1, 1)
    assert stats.oldest_ready_age_ms is not None and stats.oldest_ready_age_ms >= 0
    empty = await store.queue_stats("never")
    assert (empty.ready, empty.submitted, empty.oldest_ready_age_ms) == (0, 0, None)


@pytest.mark.anyio
async def test_queue_leases_lists_held_tasks_with_their_workers_soonest_deadline_first(
    store: ts.GenericTaskStore,
) -> None:
    for n in range(4):
        await store.submit(METHOD, n, owner_id=f"owner-{n}", queue="held")
    late = await claim_one(store, "held", lease_ms=60_000, worker_id="w-late")
    soon = await claim_one(store, "held", lease_ms=20_000, worker_id="w-soon")
    anonymous = await claim_one(store, "held", lease_ms=40_000)
    done = await claim_one(store, "held", lease_ms=30_000, worker_id="w-done")
    await done.complete(TaskStatus.COMPLETED, None, 1)
    leases = await store.queue_leases("held")
    assert [(one.task_id, one.owner_id, one.worker_id) for one in leases] == [
        (soon.task_id, soon.owner_id, "w-soon"),
        (anonymous.task_id, anonymous.owner_id, anonymous.worker_id),
        (late.task_id, late.owner_id, "w-late"),
    ]
    assert [one.expires_at for one in leases] == [
        soon.expires_at,
        anonymous.expires_at,
        late.expires_at,
    ]
    assert all(one.attempt == 1 and not one.lost for one in leases)
    assert [one.task_id for one in await store.queue_leases("held", limit=2)] == [
        soon.task_id,
        anonymous.task_id,
    ]
    assert await store.queue_leases("never") == []


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.5, True])
async def test_queue_leases_refuses_a_bad_limit(store: ts.GenericTaskStore, limit: Any) -> None:
    with pytest.raises(InvalidArgument):
        await store.queue_leases("held", limit=limit)
