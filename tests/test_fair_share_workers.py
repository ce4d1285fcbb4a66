"""Fair share under load: one owner's backlog does not make another wait behind it.

Owner A submits 10,000 tasks, then owner B (of the same shard) submits 50; then four
``run_worker`` loops share the queue. Claims take turns between the two owners, so
B's 50 are all done while A has had only a small part of its backlog done: fewer
than 500, against the 10,000 a first-in, first-out queue would run first. Memory,
standalone Redis and Redis Cluster; async workers (the blocking ones share the claim
scripts).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import run_worker
from tests._async.test_fair_share import same_shard_owner
from tests._async.test_worker_loop import Flag
from tests.concurrently import async_background

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

StoreFactory = Callable[..., ts.GenericTaskStore]

A = "tenant-a"
METHOD = "tools/call"
WORKERS = 4
BOUND_S = 60.0


async def test_fifty_tasks_of_one_owner_finish_before_500_of_anothers_10000(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=None))
    b = same_shard_owner(A)
    await store.submit_many(METHOD, ["a"] * 10_000, owner_id=A, queue="shared")
    await store.submit_many(METHOD, ["b"] * 50, owner_id=b, queue="shared")
    done = {"a": 0, "b": 0}
    a_when_b_finished: list[int] = []
    b_done = anyio.Event()
    stop = Flag()

    async def handler(lease: ts.Lease) -> str:
        owner = str(lease.params)
        done[owner] += 1
        if owner == "b" and done["b"] == 50:
            a_when_b_finished.append(done["a"])
            b_done.set()
        return "ok"

    async def worker() -> None:
        await run_worker(store, handler, queue="shared", stop=stop, concurrency=8)

    async with async_background() as spawn:
        for _ in range(WORKERS):
            spawn(worker)
        with anyio.fail_after(BOUND_S):
            await b_done.wait()
        stop.set()
    assert done["b"] == 50
    assert a_when_b_finished[0] < 500, a_when_b_finished
