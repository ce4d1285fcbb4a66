"""Pausing a queue under running workers: claims stop, leases held finish, resume goes on.

Two ``run_worker`` loops work a queue of 100 tasks; the queue is paused once some are
done. The tasks held then finish, and while the queue stays paused no further task
is claimed; after the resume every task completes, each exactly once. Memory,
standalone Redis and Redis Cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import run_worker
from tests._async.test_worker_loop import FAST, Flag
from tests.concurrently import async_background

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNERS = [f"owner-{n}" for n in range(4)]
TASKS = 100
BOUND_S = 30.0


async def until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(BOUND_S):
        while not check():
            await anyio.sleep(0.02)


async def test_a_pause_stops_claims_under_running_workers_and_a_resume_finishes_every_task(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=None))
    for at in range(TASKS):
        await store.submit("tools/call", at, owner_id=OWNERS[at % 4], queue="work")
    runs: Counter[int] = Counter()
    stop = Flag()

    async def handler(lease: ts.Lease) -> str:
        runs[int(str(lease.params))] += 1
        await anyio.sleep(0.01)
        return "ok"

    async def worker() -> None:
        await run_worker(store, handler, queue="work", stop=stop, concurrency=4, **FAST)

    async with async_background() as spawn:
        spawn(worker)
        spawn(worker)
        await until(lambda: sum(runs.values()) >= 20)
        await store.pause_queue("work")
        with anyio.fail_after(BOUND_S):
            while (stats := await store.queue_stats("work")).leased:
                await anyio.sleep(0.02)
        claimed = stats.claimed
        await anyio.sleep(0.5)
        paused = await store.queue_stats("work")
        assert paused.paused and paused.claimed == claimed  # nothing leased while paused
        assert paused.ready == TASKS - paused.completed > 0
        await store.resume_queue("work")
        with anyio.fail_after(BOUND_S):
            while (await store.queue_stats("work")).completed < TASKS:
                await anyio.sleep(0.05)
        stop.set()
    assert sorted(runs) == list(range(TASKS))
    assert set(runs.values()) == {1}  # no task lost, none run twice
