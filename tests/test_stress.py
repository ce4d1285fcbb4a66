"""Stress: worker processes (fork and spawn), each with threads, all on the same few tasks.

Every process builds its own blocking store from the server's URL in the pool's
initializer, as the README recommends; the threads of a process share that store.
A barrier shared by every thread of every process releases them together, so their
reads and compare-and-sets really interleave. Workers never let an exception out:
they report each outcome as plain strings, which the parent then checks against
what is stored. An async variant runs 20 coroutines on one async store.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import multiprocessing.synchronize
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import (
    ConcurrentModification,
    InvalidTransition,
    ResourceExhausted,
    SecurityConfig,
    StoreConfig,
)

pytestmark = pytest.mark.slow  # load from many stores

OWNER = "stress-owner"
METHOD = "tools/call"
PROCESSES = 3
THREADS = 3
TIMEOUT = 60.0
"""Seconds any wait on a worker may take before the test gives up."""

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]
START_METHODS = ["fork", "spawn"]

T = TypeVar("T")
Outcome = tuple[str, str, str, str]
"""(task id, who, outcome, detail): plain strings, so they always cross a pipe."""


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


# --- in the worker processes ----------------------------------------------------------

_STORE: ts.GenericTaskStore | None = None
_BARRIER: multiprocessing.synchronize.Barrier | None = None


def start_worker(
    url: str,
    prefix: str,
    config: StoreConfig,
    security: SecurityConfig,
    barrier: multiprocessing.synchronize.Barrier,
) -> None:
    """Pool initializer: one store per process, shared by the process's threads."""
    global _STORE, _BARRIER
    _STORE = ts.GenericTaskStore.from_url(url, prefix=prefix, config=config, security=security)
    _BARRIER = barrier


def _worker_state() -> tuple[ts.GenericTaskStore, multiprocessing.synchronize.Barrier]:
    assert _STORE is not None and _BARRIER is not None, "start_worker did not run"
    return _STORE, _BARRIER


def _in_threads(threads: int, job: Callable[[int], list[T]]) -> list[T]:
    """Run ``job(thread)`` in ``threads`` threads; return all their outcomes."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [outcome for outcomes in pool.map(job, range(threads)) for outcome in outcomes]


def merge_variables(worker: int, task_ids: list[str], merges: int, threads: int) -> list[Outcome]:
    """Each thread merges ``merges`` keys of its own, spread over the tasks."""
    store, barrier = _worker_state()

    def thread(number: int) -> list[Outcome]:
        outcomes: list[Outcome] = []
        try:
            barrier.wait(timeout=TIMEOUT)
        except Exception as exc:
            return [("", f"w{worker}t{number}", "error", repr(exc))]
        for merge in range(merges):
            task_id = task_ids[merge % len(task_ids)]
            key = f"w{worker}t{number}m{merge}"
            try:
                store.set_variables(task_id, {key: [worker, number, merge]}, owner_id=OWNER)
            except ConcurrentModification as exc:
                outcomes.append((task_id, key, "failed", str(exc)))
            except Exception as exc:
                outcomes.append((task_id, key, "error", repr(exc)))
            else:
                outcomes.append((task_id, key, "ok", ""))
        return outcomes

    return _in_threads(threads, thread)


def complete_each(worker: int, task_ids: list[str], threads: int) -> list[Outcome]:
    """Each thread tries to complete every task, one round per task, all threads at once."""
    store, barrier = _worker_state()

    def thread(number: int) -> list[Outcome]:
        who = f"w{worker}t{number}"
        status = "completed" if (worker + number) % 2 == 0 else "failed"
        outcomes: list[Outcome] = []
        for task_id in task_ids:
            try:
                barrier.wait(timeout=TIMEOUT)
                store.complete_with_result(
                    task_id, status, f"by {who}", {"winner": who}, owner_id=OWNER
                )
            except InvalidTransition as exc:
                if exc.to_status == status:
                    outcomes.append((task_id, who, "lost", exc.from_status))
                else:
                    outcomes.append((task_id, who, "error", f"to_status {exc.to_status!r}"))
            except Exception as exc:
                outcomes.append((task_id, who, "error", repr(exc)))
            else:
                outcomes.append((task_id, who, "won", status))
        return outcomes

    return _in_threads(threads, thread)


def create_many(worker: int, attempts: int, threads: int) -> list[Outcome]:
    """Each thread tries ``attempts`` creates for the one owner."""
    store, barrier = _worker_state()

    def thread(number: int) -> list[Outcome]:
        who = f"w{worker}t{number}"
        outcomes: list[Outcome] = []
        try:
            barrier.wait(timeout=TIMEOUT)
        except Exception as exc:
            return [("", who, "error", repr(exc))]
        for _ in range(attempts):
            try:
                created = store.create(METHOD, owner_id=OWNER)
            except ResourceExhausted as exc:
                outcomes.append(("", who, "exhausted", str(exc.owner_limit)))
            except Exception as exc:
                outcomes.append(("", who, "error", repr(exc)))
            else:
                outcomes.append((created.task.task_id, who, "created", ""))
        return outcomes

    return _in_threads(threads, thread)


# --- in the test process --------------------------------------------------------------


@contextmanager
def worker_pool(
    method: str,
    url: str,
    prefix: str,
    *,
    threads: int,
    config: StoreConfig | None = None,
    security: SecurityConfig | None = None,
) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of PROCESSES workers started with ``method``, with a barrier for all threads."""
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(PROCESSES * threads)
    pool = context.Pool(
        PROCESSES,
        initializer=start_worker,
        initargs=(url, prefix, config or StoreConfig(), security or SecurityConfig(), barrier),
    )
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def run_on_every_worker(
    pool: multiprocessing.pool.Pool, job: Callable[..., list[Outcome]], *args: Any
) -> list[Outcome]:
    """Give one call of ``job(worker, *args)`` to each process; gather all outcomes.

    Every call waits at the barrier until the threads of all PROCESSES calls have
    arrived, so no process can take two calls: each process gets exactly one.
    """
    pending = [pool.apply_async(job, (worker, *args)) for worker in range(PROCESSES)]
    return [outcome for result in pending for outcome in result.get(timeout=TIMEOUT)]


def errors_in(outcomes: list[Outcome]) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome[2] == "error"]


@pytest.fixture
def reader(server_url: str, key_prefix: str) -> Iterator[ts.GenericTaskStore]:
    """The test process's own store, to set up tasks and to check what is stored."""
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        yield store


@pytest.mark.parametrize("method", START_METHODS)
def test_concurrent_merges_from_processes_and_threads_lose_no_successful_merge(
    method: str,
    server_url: str,
    key_prefix: str,
    reader: ts.GenericTaskStore,
) -> None:
    merges = 15
    task_ids = [reader.create(METHOD, owner_id=OWNER).task.task_id for _ in range(2)]
    with worker_pool(method, server_url, key_prefix, threads=THREADS) as pool:
        outcomes = run_on_every_worker(pool, merge_variables, task_ids, merges, THREADS)

    assert errors_in(outcomes) == []
    assert len(outcomes) == PROCESSES * THREADS * merges
    assert len({key for _, key, _, _ in outcomes}) == len(outcomes)
    failed = [outcome for outcome in outcomes if outcome[2] == "failed"]
    print(f"{len(outcomes)} merges, {len(failed)} gave up (ConcurrentModification)")
    for task_id in task_ids:
        stored = reader.get(task_id, owner_id=OWNER)
        succeeded = {key for tid, key, outcome, _ in outcomes if tid == task_id and outcome == "ok"}
        gave_up = {
            key for tid, key, outcome, _ in outcomes if tid == task_id and outcome == "failed"
        }
        assert succeeded <= stored.variables.keys(), "a successful merge was lost"
        assert gave_up.isdisjoint(stored.variables.keys()), "a failed merge was applied"
        assert stored.variables.keys() == succeeded, "a key nobody merged successfully"
        for key in succeeded:
            match = re.fullmatch(r"w(\d+)t(\d+)m(\d+)", key)
            assert match is not None
            assert stored.variables[key] == [int(part) for part in match.groups()]
        assert stored.version == 1 + len(succeeded), "a merge was applied twice or not counted"


@pytest.mark.parametrize("method", START_METHODS)
def test_processes_and_threads_racing_to_complete_a_task_have_exactly_one_winner(
    method: str, server_url: str, key_prefix: str, reader: ts.GenericTaskStore
) -> None:
    rounds = 4
    task_ids = [reader.create(METHOD, owner_id=OWNER).task.task_id for _ in range(rounds)]
    with worker_pool(method, server_url, key_prefix, threads=THREADS) as pool:
        outcomes = run_on_every_worker(pool, complete_each, task_ids, THREADS)

    assert errors_in(outcomes) == []
    for task_id in task_ids:
        attempts = [outcome for outcome in outcomes if outcome[0] == task_id]
        assert len(attempts) == PROCESSES * THREADS
        winners = [(who, status) for _, who, outcome, status in attempts if outcome == "won"]
        assert len(winners) == 1, winners
        (winner, status), losers = winners[0], [a for a in attempts if a[2] == "lost"]
        assert len(losers) == PROCESSES * THREADS - 1
        assert {from_status for _, _, _, from_status in losers} == {status}
        stored = reader.get(task_id, owner_id=OWNER)
        assert stored.task.status == status
        assert stored.result == {"winner": winner}
        assert stored.task.status_message == f"by {winner}"
        assert stored.version == 2


@pytest.mark.parametrize("method", START_METHODS)
def test_concurrent_creates_from_processes_and_threads_never_exceed_the_owner_quota(
    method: str, server_url: str, key_prefix: str, reader: ts.GenericTaskStore
) -> None:
    limit, threads, attempts = 20, 2, 10
    security = SecurityConfig(max_tasks_per_owner=limit)
    with worker_pool(method, server_url, key_prefix, threads=threads, security=security) as pool:
        outcomes = run_on_every_worker(pool, create_many, attempts, threads)

    assert errors_in(outcomes) == []
    created = [task_id for task_id, _, outcome, _ in outcomes if outcome == "created"]
    exhausted = [detail for _, _, outcome, detail in outcomes if outcome == "exhausted"]
    assert len(created) == limit
    assert len(set(created)) == limit
    assert exhausted == [str(limit)] * (PROCESSES * threads * attempts - limit)
    page = reader.list(owner_id=OWNER, limit=100)
    assert page.next_cursor is None
    assert sorted(record.task.task_id for record in page.tasks) == sorted(created)


# --- async: one process, 20 coroutines on one store -------------------------------------

COROUTINES = 20


@pytest.mark.anyio
async def test_twenty_coroutines_merging_on_one_async_store_lose_no_successful_merge(
    server_url: str, key_prefix: str
) -> None:
    merges = 10
    outcomes: list[Outcome] = []
    async with tsa.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        task_ids = [(await store.create(METHOD, owner_id=OWNER)).task.task_id for _ in range(2)]

        async def merge_all(coroutine: int) -> None:
            for merge in range(merges):
                task_id = task_ids[merge % len(task_ids)]
                key = f"c{coroutine}m{merge}"
                try:
                    await store.set_variables(task_id, {key: [coroutine, merge]}, owner_id=OWNER)
                except ConcurrentModification as exc:
                    outcomes.append((task_id, key, "failed", str(exc)))
                else:
                    outcomes.append((task_id, key, "ok", ""))

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as group:
                for coroutine in range(COROUTINES):
                    group.start_soon(merge_all, coroutine)

        assert len(outcomes) == COROUTINES * merges
        failed = [outcome for outcome in outcomes if outcome[2] == "failed"]
        print(f"{len(outcomes)} merges, {len(failed)} gave up (ConcurrentModification)")
        for task_id in task_ids:
            stored = await store.get(task_id, owner_id=OWNER)
            succeeded = {k for tid, k, outcome, _ in outcomes if tid == task_id and outcome == "ok"}
            gave_up = {k for tid, k, outcome, _ in outcomes if tid == task_id and outcome != "ok"}
            assert succeeded <= stored.variables.keys(), "a successful merge was lost"
            assert gave_up.isdisjoint(stored.variables.keys()), "a failed merge was applied"
            assert stored.variables.keys() == succeeded
            for key in succeeded:
                match = re.fullmatch(r"c(\d+)m(\d+)", key)
                assert match is not None
                assert stored.variables[key] == [int(part) for part in match.groups()]
            assert stored.version == 1 + len(succeeded)


async def race_to_complete(
    store: tsa.GenericTaskStore, task_id: str
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Let COROUTINES coroutines complete the task at once; return (winners, losers).

    A winner is (coroutine, status it wrote); a loser (coroutine, status it found).
    """
    won: list[tuple[int, str]] = []
    lost: list[tuple[int, str]] = []

    async def complete(coroutine: int) -> None:
        status = "completed" if coroutine % 2 == 0 else "failed"
        try:
            await store.complete_with_result(
                task_id, status, f"by {coroutine}", {"winner": coroutine}, owner_id=OWNER
            )
        except InvalidTransition as exc:
            assert exc.to_status == status
            lost.append((coroutine, exc.from_status))
        else:
            won.append((coroutine, status))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as group:
            for coroutine in range(COROUTINES):
                group.start_soon(complete, coroutine)
    return won, lost


@pytest.mark.anyio
async def test_twenty_coroutines_racing_to_complete_on_one_async_store_have_one_winner(
    server_url: str, key_prefix: str
) -> None:
    async with tsa.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        for _ in range(4):
            task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
            won, lost = await race_to_complete(store, task_id)
            assert len(won) == 1, won
            winner, status = won[0]
            assert len(lost) == COROUTINES - 1
            assert {from_status for _, from_status in lost} == {status}
            stored = await store.get(task_id, owner_id=OWNER)
            assert (stored.task.status, stored.result) == (status, {"winner": winner})
            assert stored.task.status_message == f"by {winner}"
            assert stored.version == 2
