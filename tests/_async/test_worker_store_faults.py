"""``run_worker`` when the store does not answer a lease's write: no attempt is spent.

A store that raises ``StoreUnavailable`` for a handler's lease write or for the
completion is waited for while the lease holds; a write whose reply was lost and
that had in fact landed is recognised, never applied twice nor counted as lost.
Only a lease that runs out meanwhile counts (a lost lease). The faults are
injected into the store's backend, so each one happens exactly where the test
says; every test runs on memory, a standalone Redis and a cluster, and
scripts/unasync.py derives the blocking twin. The real outage (Redis killed and
restarted) is tests/test_worker_redis_restart.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import StoreUnavailable, TaskStatus, run_worker

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

BOUND_S = 20.0
"""The longest a worker runs in a test."""

pytestmark = pytest.mark.timeout(60)


class Flag:
    """The worker's stop flag, set by a handler once the test has seen what it needs.

    It also sets itself after ``BOUND_S``, so a worker that never gets there stops and
    the test fails on what the store holds.
    """

    def __init__(self) -> None:
        self.value = False
        self.deadline = time.monotonic() + BOUND_S

    def is_set(self) -> bool:
        return self.value or time.monotonic() > self.deadline

    def set(self) -> None:
        self.value = True


class Faults:
    """Make a backend method raise ``StoreUnavailable``, ``times`` times, for calls ``when`` picks.

    ``landed`` (the reply lost): the call is applied first, then the error says its
    outcome is unknown. Otherwise nothing is sent.
    """

    def __init__(self, store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = store._backend
        self.monkeypatch = monkeypatch
        self.raised: dict[str, int] = {}

    def on(
        self,
        method: str,
        *,
        times: int,
        landed: bool = False,
        when: Callable[[Any], bool] = lambda _: True,
    ) -> None:
        real = getattr(self.backend, method)
        self.raised[method] = 0

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if self.raised[method] >= times or not when(args[0]):
                return await real(*args, **kwargs)
            self.raised[method] += 1
            if landed:
                await real(*args, **kwargs)
            raise StoreUnavailable(f"{method}: injected", outcome_unknown=landed)

        self.monkeypatch.setattr(self.backend, method, flaky)


def completion(first: Any) -> bool:
    """A completion's call: a terminal compare_and_set, or any complete_and_claim (its queue)."""
    return isinstance(first, str) or bool(first.terminal)


def status_write(status: TaskStatus) -> Callable[[Any], bool]:
    return lambda write: bool(write.status == status.value)


async def submit(store: ts.GenericTaskStore, max_attempts: int = 1) -> str:
    record = await store.submit(METHOD, {"n": 1}, owner_id=OWNER, max_attempts=max_attempts)
    return record.task.task_id


@pytest.fixture
def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store()


COMPLETION_LOST: dict[str, list[tuple[str, int, bool]]] = {
    # a worker completes in its shard's next batch (complete_and_claim), and sends alone,
    # with compare_and_set, a completion whose batch went unanswered
    "the batch lands, its reply is lost": [("complete_and_claim", 1, True)],
    "the batch is lost, its resend lands and its reply is lost": [
        ("complete_and_claim", 1, False),
        ("compare_and_set", 1, True),
    ],
}


@pytest.mark.anyio
@pytest.mark.parametrize("plan", COMPLETION_LOST)
async def test_a_completion_applied_but_unanswered_completes_the_task_once(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    task_id = await submit(store)
    faults = Faults(store, monkeypatch)
    for method, times, landed in COMPLETION_LOST[plan]:
        faults.on(method, times=times, landed=landed, when=completion)
    stop = Flag()

    async def handler(lease: ts.Lease) -> dict[str, int]:
        stop.set()
        return {"n": 2}

    stats = await run_worker(store, handler, stop=stop, **FAST)

    assert faults.raised == {method: times for method, times, _ in COMPLETION_LOST[plan]}
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, {"n": 2})
    assert record.job is not None and record.job.attempt == 1
    assert (stats.completed, stats.failed, stats.lost, stats.retried) == (1, 0, 0, 0)


@pytest.mark.anyio
async def test_a_completion_the_store_does_not_answer_is_sent_again_until_it_does(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await submit(store)
    faults = Faults(store, monkeypatch)
    faults.on("complete_and_claim", times=1, when=completion)
    faults.on("compare_and_set", times=3, when=completion)
    stop = Flag()

    async def handler(lease: ts.Lease) -> str:
        stop.set()
        return "done"

    stats = await run_worker(store, handler, stop=stop, **FAST)

    assert faults.raised == {"complete_and_claim": 1, "compare_and_set": 3}
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "done")
    assert (stats.completed, stats.failed, stats.lost) == (1, 0, 0)


@pytest.mark.anyio
async def test_a_handlers_lease_writes_ride_out_the_store_and_cost_no_attempt(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await submit(store)
    faults = Faults(store, monkeypatch)
    faults.on("merge_variables", times=3)
    # the status change lands but its reply is lost: its resend must not fail the handler
    faults.on("compare_and_set", times=1, landed=True, when=status_write(TaskStatus.INPUT_REQUIRED))
    stop = Flag()
    seen: list[str] = []

    async def handler(lease: ts.Lease) -> str:
        try:
            await lease.set_variables({"step": 1})
            record = await lease.update_status(TaskStatus.INPUT_REQUIRED, "asking")
            seen.append(record.task.status.value)
            await lease.set_status_message("answered")
        finally:
            stop.set()
        return "done"

    stats = await run_worker(store, handler, stop=stop, **FAST)

    assert faults.raised == {"merge_variables": 3, "compare_and_set": 1}
    assert seen == ["input_required"]
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "done")
    assert record.variables == {"step": 1}
    assert record.job is not None and record.job.attempt == 1
    assert (stats.completed, stats.failed, stats.lost, stats.retried) == (1, 0, 0, 0)


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_lease_write_is_sent_again_past_the_first_lease_while_renewals_keep_it(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await submit(store)
    faults = Faults(store, monkeypatch)
    away_until = time.monotonic() + 2.5  # longer than the lease: only renewals keep it
    faults.on("merge_variables", times=1_000_000, when=lambda _: time.monotonic() < away_until)
    stop = Flag()

    async def handler(lease: ts.Lease) -> str:
        try:
            await lease.set_variables({"step": 1})
        finally:
            stop.set()
        return "done"

    stats = await run_worker(store, handler, stop=stop, lease_ms=1_500, **FAST)

    assert faults.raised["merge_variables"] >= 2
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "done")
    assert record.variables == {"step": 1}
    assert record.job is not None and record.job.attempt == 1
    assert (stats.completed, stats.failed, stats.lost, stats.retried) == (1, 0, 0, 0)


@pytest.mark.anyio
async def test_a_release_applied_but_unanswered_is_not_taken_for_a_lost_lease(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await submit(store, max_attempts=2)
    faults = Faults(store, monkeypatch)
    faults.on("release", times=1, landed=True)
    stop = Flag()

    async def handler(lease: ts.Lease) -> str:
        if lease.attempt == 1:
            raise ValueError("first attempt fails")
        stop.set()
        return "second"

    stats = await run_worker(store, handler, stop=stop, **FAST)

    assert faults.raised["release"] == 1
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "second")
    assert (stats.retried, stats.completed, stats.failed, stats.lost) == (1, 1, 0, 0)


@pytest.mark.anyio
async def test_a_release_handing_the_attempt_back_resent_after_a_lost_reply_hands_it_back_once(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await submit(store, max_attempts=3)
    first = await store.claim(timeout=5)
    assert first is not None
    await first.release()  # this attempt counts
    second = await store.claim(timeout=5)
    assert second is not None and (second.task_id, second.attempt) == (task_id, 2)
    faults = Faults(store, monkeypatch)
    faults.on("release", times=1, landed=True)
    second._hold(time.monotonic() + BOUND_S)  # as run_worker does: sent again while held

    await second.release(count_attempt=False)

    assert faults.raised["release"] == 1
    record = await store.get(task_id, owner_id=OWNER)
    assert record.job is not None and (record.job.state, record.job.attempt) == ("ready", 1)
    # handed back once: attempt 2 again (not 3: kept; not 1: handed back twice)
    third = await store.claim(timeout=5)
    assert third is not None and (third.task_id, third.attempt) == (task_id, 2)


@pytest.mark.anyio
async def test_a_store_away_longer_than_the_lease_loses_it_and_the_handler_never_sees_its_error(
    store: ts.GenericTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = await submit(store, max_attempts=2)
    faults = Faults(store, monkeypatch)
    faults.on("merge_variables", times=1_000_000)
    faults.on("renew", times=1_000_000)
    stop = Flag()
    raised: list[type[BaseException]] = []
    second: list[int] = []

    async def handler(lease: ts.Lease) -> str:
        # the worker stops once both attempts are through, whichever ends last (a sync
        # handler given up may still be in its thread when the next attempt runs)
        if lease.attempt == 2:
            second.append(2)
            if raised:
                stop.set()
            return "second"
        try:
            await lease.set_variables({"step": 1})
        except BaseException as exc:  # LeaseLost, or the worker's cancellation
            raised.append(type(exc))
            monkeypatch.undo()  # the store answers again
            if second:
                stop.set()
            raise
        return "never"

    stats = await run_worker(store, handler, stop=stop, lease_ms=1_000, **FAST)

    assert raised and StoreUnavailable not in raised
    assert faults.raised["merge_variables"] >= 1
    record = await store.get(task_id, owner_id=OWNER)
    assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "second")
    assert record.job is not None and record.job.attempt == 2
    assert (stats.lost, stats.failed, stats.retried, stats.completed) == (1, 0, 0, 1)
