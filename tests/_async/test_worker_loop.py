"""``run_worker``: claiming, completing, retrying, renewing, stopping, on every backend.

Every test runs on memory, a standalone Redis and a 3-primary cluster. Leases
and pauses are short and real; nothing asserts a duration. Written for the async
store, where the worker runs as a task next to the test; scripts/unasync.py derives
the blocking twin, where the blocking ``run_worker`` runs in a thread next to the
test and the handlers are blocking (``tests/concurrently.py``). What only an async
handler or worker does (being cancelled) is in tests/test_worker_cancellation.py;
what only the blocking worker does (its handlers' threads, an async handler under
it) is in tests/test_worker_threads.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidArgument,
    LeaseLost,
    StoreConfig,
    TaskStatus,
    WorkerStats,
    run_worker,
)
from tests.concurrently import async_background, async_counter

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., ts.GenericTaskStore]
OWNER = "alice"
METHOD = "tools/call"
FAST: dict[str, Any] = {
    "retry_base_ms": 20,
    "retry_max_ms": 100,
    "idle_wait_s": 0.1,
    "sweep_every_s": 0.5,
}
"""Short pauses, so a test takes well under a second per retry."""
BOUND_S = 30.0
"""No test waits longer than this for the outcome it expects."""


class Flag:
    """A stop flag a test sets (what ``run_worker`` accepts: anything with ``is_set``)."""

    def __init__(self) -> None:
        self.value = False

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True


async def submit_many(
    store: ts.GenericTaskStore, count: int, queue: str = "default", **options: Any
) -> list[str]:
    ids = []
    for number in range(count):
        record = await store.submit(METHOD, {"n": number}, owner_id=OWNER, queue=queue, **options)
        ids.append(record.task.task_id)
    return ids


async def until_terminal(store: ts.GenericTaskStore, ids: list[str]) -> list[ts.TaskRecord]:
    """Wait (no polling) until every task is terminal; return the final records."""
    records = []
    for task_id in ids:
        record = await store.get(task_id, owner_id=OWNER)
        while not record.task.status.is_terminal:
            record = await store.wait(
                task_id, owner_id=OWNER, after_version=record.version, timeout=BOUND_S
            )
        records.append(record)
    return records


async def with_worker(
    store: ts.GenericTaskStore,
    handler: Any,
    body: Callable[[Flag], Awaitable[None]],
    **options: Any,
) -> WorkerStats:
    """Run ``run_worker`` while ``body`` runs; stop it (the flag) when ``body`` returns."""
    flag = Flag()
    stats: list[WorkerStats] = []

    async def worker() -> None:
        stats.append(await run_worker(store, handler, stop=flag, **{**FAST, **options}))

    async with async_background() as spawn:
        spawn(worker)
        try:
            await body(flag)
        finally:
            flag.set()
    return stats[0]


async def test_the_handlers_return_value_completes_each_task_with_that_result(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 12)

    async def double(lease: ts.Lease) -> dict[str, Any]:
        return {"double": 2 * lease.params["n"]}

    async def body(_: Flag) -> None:
        records = await until_terminal(store, ids)
        assert [r.task.status for r in records] == [TaskStatus.COMPLETED] * 12
        assert [r.result for r in records] == [{"double": 2 * n} for n in range(12)]

    stats = await with_worker(store, double, body, concurrency=4)
    assert (stats.claimed, stats.completed, stats.failed, stats.lost) == (12, 12, 0, 0)
    assert stats.released == 0


async def test_a_sync_handler_runs_in_a_thread_and_completes_its_task(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 3)

    def square(lease: ts.Lease) -> int:
        n: int = lease.params["n"]
        return n * n

    async def body(_: Flag) -> None:
        records = await until_terminal(store, ids)
        assert [r.result for r in records] == [0, 1, 4]

    await with_worker(store, square, body)


async def test_free_slots_are_filled_with_one_batch_claim_and_handlers_run_concurrently(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 6)
    asked: list[int] = []
    claim_many = store.claim_many

    async def counting(queue: str, count: int, **options: Any) -> list[ts.Lease]:
        asked.append(count)
        return await claim_many(queue, count, **options)

    store.claim_many = counting  # type: ignore[method-assign]
    running = async_counter(6)

    async def together(lease: ts.Lease) -> str:
        await running()
        await running.all_in()  # every handler waits until all six run at once
        return "ok"

    async def body(_: Flag) -> None:
        await until_terminal(store, ids)

    await with_worker(store, together, body, concurrency=6)
    assert running.count == 6
    assert asked[0] == 6  # the first claim asked for every free slot at once


class BackendCalls:
    """What the worker sent the store's backend: its batched rounds, its lone completions."""

    def __init__(self, store: ts.GenericTaskStore) -> None:
        backend = store._backend
        self.rounds: list[tuple[int, int, int]] = []
        """Per complete_and_claim call: (completions sent, tasks asked, tasks claimed)."""
        self.lone_completions = 0
        """Terminal compare-and-sets: completions sent alone."""
        batched, alone = backend.complete_and_claim, backend.compare_and_set  # type: ignore[attr-defined]

        async def complete_and_claim(
            queue: str, shard: int, writes: list[Any], count: int, *rest: Any
        ) -> Any:
            outcomes, reply = await batched(queue, shard, writes, count, *rest)
            self.rounds.append((len(writes), count, len(reply.claimed)))
            return outcomes, reply

        async def compare_and_set(write: Any) -> Any:
            self.lone_completions += bool(write.terminal)
            return await alone(write)

        backend.complete_and_claim = complete_and_claim  # type: ignore[attr-defined]
        backend.compare_and_set = compare_and_set  # type: ignore[method-assign]


async def test_finished_jobs_are_completed_and_their_successors_claimed_in_one_call(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 30)  # one owner: one shard of the queue
    calls = BackendCalls(store)
    running, most, counting = [0], [0], threading.Lock()  # handlers may be threads

    async def double(lease: ts.Lease) -> int:
        with counting:
            running[0] += 1
            most[0] = max(most[0], running[0])
        await anyio.sleep(0.002)
        with counting:
            running[0] -= 1
        return 2 * int(lease.params["n"])

    async def body(_: Flag) -> None:
        records = await until_terminal(store, ids)
        assert [r.result for r in records] == [2 * n for n in range(30)]

    stats = await with_worker(store, double, body, concurrency=6)
    assert (stats.claimed, stats.completed) == (30, 30)
    assert calls.lone_completions == 0
    assert sum(sent for sent, _, _ in calls.rounds) == 30  # every completion rode a round
    assert sum(claimed for _, _, claimed in calls.rounds) > 0  # and successors rode back
    # the rounds claim no more than the slots their completions free: never past the
    # concurrency
    assert sum(asked for _, asked, _ in calls.rounds) <= 30
    assert most[0] <= 6


async def test_a_raising_handler_is_retried_with_backoff_then_fails_with_its_message(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1, max_attempts=3)
    attempts: list[int] = []

    async def broken(lease: ts.Lease) -> None:
        attempts.append(lease.attempt)
        raise ValueError(f"bad input on attempt {lease.attempt}")

    async def body(_: Flag) -> None:
        [record] = await until_terminal(store, [task_id])
        assert record.task.status is TaskStatus.FAILED
        assert record.task.status_message == "bad input on attempt 3"
        assert record.result == {"error": "bad input on attempt 3", "type": "ValueError"}
        assert record.job is not None and record.job.state == "done"

    stats = await with_worker(store, broken, body)
    assert attempts == [1, 2, 3]
    assert (stats.retried, stats.failed, stats.completed) == (2, 1, 0)


async def test_between_attempts_the_task_waits_delayed_in_its_queue(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1, max_attempts=2)
    first_failed = async_counter(1)

    async def fails_once(lease: ts.Lease) -> str:
        if lease.attempt == 1:
            await first_failed()
            raise RuntimeError("flaky")
        return "second time lucky"

    async def body(_: Flag) -> None:
        await first_failed.all_in()
        record = await store.get(task_id, owner_id=OWNER)
        while record.job is not None and record.job.state == "leased":
            record = await store.wait(
                task_id, owner_id=OWNER, after_version=record.version, timeout=BOUND_S
            )
        # released with a pause of at least retry_base_ms / 2: delayed, not ready at once
        assert record.job is not None and record.job.state in ("delayed", "leased", "done")
        [record] = await until_terminal(store, [task_id])
        assert (record.task.status, record.result) == (TaskStatus.COMPLETED, "second time lucky")
        assert record.job is not None and record.job.attempt == 2

    await with_worker(store, fails_once, body, retry_base_ms=2000, retry_max_ms=2000)


async def test_the_workers_own_max_attempts_caps_the_tasks(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1, max_attempts=5)
    attempts: list[int] = []

    def broken(lease: ts.Lease) -> None:
        attempts.append(lease.attempt)
        raise KeyError("k")

    async def body(_: Flag) -> None:
        [record] = await until_terminal(store, [task_id])
        assert record.task.status is TaskStatus.FAILED
        assert record.task.status_message == "'k'"

    await with_worker(store, broken, body, max_attempts=2)
    assert attempts == [1, 2]


async def test_a_handler_longer_than_the_lease_keeps_it_through_renewals(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)
    rival = async_make_store()
    started = async_counter(1)

    async def slow(lease: ts.Lease) -> int:
        await started()
        await anyio.sleep(2.5)  # two and a half leases of 1 s, renewed every third of one
        return lease.attempt

    async def body(_: Flag) -> None:
        await started.all_in()
        stolen: list[ts.Lease] = []
        until = time.monotonic() + 2.0
        while time.monotonic() < until:  # a rival claiming all along gets nothing
            stolen += await rival.claim_many("default", 5, timeout=0.2, lease_ms=1000)
        assert stolen == []
        [record] = await until_terminal(store, [task_id])
        assert (record.task.status, record.result) == (TaskStatus.COMPLETED, 1)

    # a lease of 1 s: renewals may be late by two thirds of it on a loaded machine
    stats = await with_worker(store, slow, body, lease_ms=1000)
    assert (stats.claimed, stats.completed, stats.lost) == (1, 1, 0)


class RenewalAnsweredAfterTheCompletion:
    """The store, but its worker's renewals are answered only once the tasks they renew ended.

    A renewal sent while the handler finishes and answered after the holder's own completion
    landed: the server refuses it ("completed"), yet no lease was lost.
    """

    def __init__(self, store: ts.GenericTaskStore) -> None:
        self.store = store
        self.renewing = async_counter(1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def renew_leases(self, leases: list[ts.Lease], lease_ms: int | None = None) -> Any:
        await self.renewing()
        for lease in leases:
            await self.store.wait(lease.task_id, owner_id=lease.owner_id, until_terminal=True)
        return await self.store.renew_leases(leases, lease_ms=lease_ms)


async def test_a_renewal_refused_because_the_holder_just_completed_the_task_is_no_lost_lease(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)
    slow_renewals = RenewalAnsweredAfterTheCompletion(store)

    async def handler(lease: ts.Lease) -> str:
        await slow_renewals.renewing.all_in()  # the worker's renewal is on its way
        await lease.renew(60_000)  # so the lease cannot run out meanwhile, however slow
        return "done"

    async def body(_: Flag) -> None:
        [record] = await until_terminal(store, [task_id])
        assert record.result == "done"

    # renewed each second, so the handler has two seconds to renew the lease itself
    stats = await with_worker(slow_renewals, handler, body, lease_ms=3000)  # type: ignore[arg-type]
    assert (stats.claimed, stats.completed, stats.lost) == (1, 1, 0)


async def test_a_handler_whose_fenced_write_raises_lease_lost_gives_the_task_up(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)

    async def cancelled_midway(lease: ts.Lease) -> str:
        await store.cancel(task_id, owner_id=OWNER)
        await lease.set_variables({"progress": 50})  # LeaseLost("cancelled")
        return "never written"

    async def body(_: Flag) -> None:
        await until_terminal(store, [task_id])

    stats = await with_worker(store, cancelled_midway, body)
    record = await store.get(task_id, owner_id=OWNER)
    assert record.task.status is TaskStatus.CANCELLED
    assert "progress" not in record.variables
    assert stats.lost == 1 and stats.completed == 0


async def test_on_stop_running_handlers_finish_within_the_grace_period(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 2)
    both = async_counter(2)

    async def slowish(lease: ts.Lease) -> str:
        await both()
        await anyio.sleep(0.5)
        return "finished"

    async def body(flag: Flag) -> None:
        await both.all_in()

    stats = await with_worker(store, slowish, body, concurrency=2, grace_s=10.0)
    records = [await store.get(task_id, owner_id=OWNER) for task_id in ids]
    assert [r.result for r in records] == ["finished", "finished"]
    assert stats.released == 0


async def test_an_expired_lease_of_a_lost_worker_is_taken_over(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)
    lost = await store.claim(lease_ms=200, timeout=0)  # a worker that dies holding it
    assert lost is not None

    async def handler(lease: ts.Lease) -> int:
        return lease.attempt

    async def body(_: Flag) -> None:
        [record] = await until_terminal(store, [task_id])
        assert (record.task.status, record.result) == (TaskStatus.COMPLETED, 2)

    await with_worker(store, handler, body)
    with pytest.raises(LeaseLost):
        await lost.complete(TaskStatus.COMPLETED, None, "late")
    assert (await store.get(task_id, owner_id=OWNER)).result == 2


async def test_a_result_the_store_refuses_fails_the_task_like_a_raising_handler(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(StoreConfig(max_result_size_bytes=100))
    [task_id] = await submit_many(store, 1, max_attempts=1)

    async def huge(lease: ts.Lease) -> str:
        return "x" * 1000

    async def body(_: Flag) -> None:
        [record] = await until_terminal(store, [task_id])
        assert record.task.status is TaskStatus.FAILED
        assert record.result is not None and record.result["type"] == "VariableSizeExceeded"

    await with_worker(store, huge, body)


@pytest.mark.parametrize(
    "option",
    [
        {"concurrency": 0},
        {"lease_ms": 0},
        {"lease_ms": -5},
        {"max_attempts": 0},
        {"grace_s": -1.0},
        {"idle_wait_s": 0},
        {"queue": ""},
        {"retry_base_ms": 10, "retry_max_ms": 5},
        {"worker_id": ""},
    ],
    ids=str,
)
async def test_a_bad_setting_is_refused_before_anything_is_claimed(
    async_make_store: StoreFactory, option: dict[str, Any]
) -> None:
    store = async_make_store()
    [task_id] = await submit_many(store, 1)

    async def never(lease: ts.Lease) -> None:
        raise AssertionError("no task may be claimed")

    with pytest.raises(InvalidArgument):
        await run_worker(store, never, **option)
    record = await store.get(task_id, owner_id=OWNER)
    assert record.job is not None and record.job.state == "ready"
