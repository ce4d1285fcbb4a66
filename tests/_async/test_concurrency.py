"""Races between stores that share one storage, on every backend.

Written for the async store, whose racers are tasks of one task group;
scripts/unasync.py derives the blocking twin, whose racers are threads released
together by a barrier so that their reads and compare-and-sets really interleave
(``tests/concurrently.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import redis

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidTransition,
    ResourceExhausted,
    SecurityConfig,
    TaskStatus,
)
from tests.concurrently import async_together

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"
WORKERS = 8


async def race_to_complete(stores: list[ts.GenericTaskStore], task_id: str) -> list[str]:
    """Let every store try to complete the task at once; tell who won and who lost."""

    async def complete(worker: int) -> str:
        try:
            await stores[worker].complete_with_result(
                task_id, TaskStatus.COMPLETED, f"by {worker}", {"worker": worker}, owner_id=OWNER
            )
        except InvalidTransition as error:
            assert (error.from_status, error.to_status) == ("completed", "completed")
            return "lost"
        return "won"

    return await async_together([partial(complete, worker) for worker in range(len(stores))])


@pytest.mark.anyio
async def test_workers_racing_to_complete_a_task_have_exactly_one_winner(
    async_make_store: StoreFactory,
) -> None:
    stores = [async_make_store() for _ in range(WORKERS)]
    for _ in range(5):
        task_id = (await stores[0].create(METHOD, owner_id=OWNER)).task.task_id
        outcomes = await race_to_complete(stores, task_id)
        winners = [worker for worker, outcome in enumerate(outcomes) if outcome == "won"]
        assert len(winners) == 1
        assert outcomes.count("lost") == WORKERS - 1
        final = await stores[0].get(task_id, owner_id=OWNER)
        assert final.result == {"worker": winners[0]}
        assert final.task.status_message == f"by {winners[0]}"
        assert final.version == 2


@pytest.mark.anyio
async def test_racers_through_one_store_also_have_exactly_one_winner(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    for _ in range(20):
        task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
        outcomes = await race_to_complete([store] * WORKERS, task_id)
        assert outcomes.count("won") == 1


@pytest.mark.anyio
async def test_a_cancel_racing_a_completion_leaves_exactly_one_of_them_applied(
    async_make_store: StoreFactory,
) -> None:
    canceller, completer = async_make_store(), async_make_store()
    task_id = (await canceller.create(METHOD, owner_id=OWNER)).task.task_id

    async def cancel() -> str:
        try:
            await canceller.cancel(task_id, owner_id=OWNER)
        except InvalidTransition:
            return "lost"
        return "won"

    async def complete() -> str:
        try:
            await completer.complete_with_result(
                task_id, TaskStatus.FAILED, None, "oops", owner_id=OWNER
            )
        except InvalidTransition:
            return "lost"
        return "won"

    cancel_outcome, complete_outcome = await async_together([cancel, complete])
    assert sorted([cancel_outcome, complete_outcome]) == ["lost", "won"]
    final = await canceller.get(task_id, owner_id=OWNER)
    if cancel_outcome == "won":
        assert (final.task.status, final.result) == (TaskStatus.CANCELLED, None)
    else:
        assert (final.task.status, final.result) == (TaskStatus.FAILED, "oops")


@pytest.mark.anyio
async def test_concurrent_set_variables_lose_no_update(async_make_store: StoreFactory) -> None:
    stores = [async_make_store() for _ in range(WORKERS)]
    task_id = (await stores[0].create(METHOD, owner_id=OWNER)).task.task_id

    async def write(worker: int) -> str:
        await stores[worker].set_variables(task_id, {f"worker-{worker}": worker}, owner_id=OWNER)
        return "written"

    writes = [partial(write, worker) for worker in range(WORKERS)]
    assert await async_together(writes) == ["written"] * WORKERS
    final = await stores[0].get(task_id, owner_id=OWNER)
    assert final.variables == {f"worker-{worker}": worker for worker in range(WORKERS)}
    assert final.version == 1 + WORKERS


@pytest.mark.anyio
async def test_concurrent_creates_never_exceed_the_owner_quota(
    async_make_store: StoreFactory,
) -> None:
    security = SecurityConfig(max_tasks_per_owner=3)
    stores = [async_make_store(security=security) for _ in range(WORKERS)]

    async def create(worker: int) -> str:
        try:
            return (await stores[worker].create(METHOD, owner_id=OWNER)).task.task_id
        except ResourceExhausted:
            return "refused"

    outcomes = await async_together([partial(create, worker) for worker in range(WORKERS)])
    created = [outcome for outcome in outcomes if outcome != "refused"]
    assert len(created) == 3
    assert outcomes.count("refused") == WORKERS - 3
    listed = (await stores[0].list(owner_id=OWNER)).tasks
    assert sorted(record.task.task_id for record in listed) == sorted(created)


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_burst_of_first_calls_on_a_server_without_the_scripts_all_succeed(
    redis_url: str, key_prefix: str
) -> None:
    """256 concurrent creates of a new store, each first met with NOSCRIPT: none fails.

    Calls that cannot share a pipeline then wait for a connection rather than fail
    on the connection pool's cap.
    """
    with redis.Redis.from_url(redis_url) as admin:
        admin.script_flush()
    unlimited = ts.SecurityConfig(max_tasks_per_owner=None)
    async with ts.GenericTaskStore.from_url(
        redis_url, prefix=key_prefix, security=unlimited
    ) as store:

        async def one(n: int) -> ts.TaskRecord:
            return await store.create("tools/call", owner_id=f"owner-{n % 64}")

        created = await async_together([partial(one, n) for n in range(256)])
        listed = [
            record
            for owner in range(64)
            for record in (await store.list(owner_id=f"owner-{owner}", limit=100)).tasks
        ]
    assert len(created) == 256
    assert {r.task.task_id for r in listed} == {r.task.task_id for r in created}
