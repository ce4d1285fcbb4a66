"""Races between async stores that share one storage, run in an anyio task group.

The blocking twin, with threads, is tests/test_concurrency_sync.py (written by
hand: task groups have no direct blocking translation).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidTransition,
    ResourceExhausted,
    SecurityConfig,
    TaskStatus,
)

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"
WORKERS = 8


async def race_to_complete(stores: list[ts.GenericTaskStore], task_id: str) -> dict[int, str]:
    """Let every store try to complete the task at once; tell who won and who lost."""
    outcomes: dict[int, str] = {}

    async def complete(worker: int) -> None:
        try:
            await stores[worker].complete_with_result(
                task_id, TaskStatus.COMPLETED, f"by {worker}", {"worker": worker}, owner_id=OWNER
            )
        except InvalidTransition as error:
            assert (error.from_status, error.to_status) == ("completed", "completed")
            outcomes[worker] = "lost"
        else:
            outcomes[worker] = "won"

    async with anyio.create_task_group() as group:
        for worker in range(len(stores)):
            group.start_soon(complete, worker)
    return outcomes


@pytest.mark.anyio
async def test_workers_racing_to_complete_a_task_have_exactly_one_winner(
    async_make_store: StoreFactory,
) -> None:
    stores = [async_make_store() for _ in range(WORKERS)]
    for _ in range(5):
        task_id = (await stores[0].create(METHOD, owner_id=OWNER)).task.task_id
        outcomes = await race_to_complete(stores, task_id)
        winners = [worker for worker, outcome in outcomes.items() if outcome == "won"]
        assert len(outcomes) == WORKERS
        assert len(winners) == 1
        final = await stores[0].get(task_id, owner_id=OWNER)
        assert final.result == {"worker": winners[0]}
        assert final.task.status_message == f"by {winners[0]}"
        assert final.version == 2


@pytest.mark.anyio
async def test_a_cancel_racing_a_completion_leaves_exactly_one_of_them_applied(
    async_make_store: StoreFactory,
) -> None:
    canceller, completer = async_make_store(), async_make_store()
    task_id = (await canceller.create(METHOD, owner_id=OWNER)).task.task_id
    outcomes: dict[str, str] = {}

    async def cancel() -> None:
        try:
            await canceller.cancel(task_id, owner_id=OWNER)
            outcomes["cancel"] = "won"
        except InvalidTransition:
            outcomes["cancel"] = "lost"

    async def complete() -> None:
        try:
            await completer.complete_with_result(
                task_id, TaskStatus.FAILED, None, "oops", owner_id=OWNER
            )
            outcomes["complete"] = "won"
        except InvalidTransition:
            outcomes["complete"] = "lost"

    async with anyio.create_task_group() as group:
        group.start_soon(cancel)
        group.start_soon(complete)

    assert sorted(outcomes.values()) == ["lost", "won"]
    final = await canceller.get(task_id, owner_id=OWNER)
    if outcomes["cancel"] == "won":
        assert (final.task.status, final.result) == (TaskStatus.CANCELLED, None)
    else:
        assert (final.task.status, final.result) == (TaskStatus.FAILED, "oops")


@pytest.mark.anyio
async def test_concurrent_set_variables_lose_no_update(async_make_store: StoreFactory) -> None:
    stores = [async_make_store() for _ in range(WORKERS)]
    task_id = (await stores[0].create(METHOD, owner_id=OWNER)).task.task_id

    async def write(worker: int) -> None:
        await stores[worker].set_variables(task_id, {f"worker-{worker}": worker}, owner_id=OWNER)

    async with anyio.create_task_group() as group:
        for worker in range(WORKERS):
            group.start_soon(write, worker)

    final = await stores[0].get(task_id, owner_id=OWNER)
    assert final.variables == {f"worker-{worker}": worker for worker in range(WORKERS)}
    assert final.version == 1 + WORKERS


@pytest.mark.anyio
async def test_concurrent_creates_never_exceed_the_owner_quota(
    async_make_store: StoreFactory,
) -> None:
    security = SecurityConfig(max_tasks_per_owner=3)
    stores = [async_make_store(security=security) for _ in range(WORKERS)]
    created: list[str] = []
    refused: list[int] = []

    async def create(worker: int) -> None:
        try:
            created.append((await stores[worker].create(METHOD, owner_id=OWNER)).task.task_id)
        except ResourceExhausted:
            refused.append(worker)

    async with anyio.create_task_group() as group:
        for worker in range(WORKERS):
            group.start_soon(create, worker)

    assert len(created) == 3
    assert len(refused) == WORKERS - 3
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
    created: list[ts.TaskRecord] = []
    async with ts.GenericTaskStore.from_url(
        redis_url, prefix=key_prefix, security=unlimited
    ) as store:

        async def one(n: int) -> None:
            created.append(await store.create("tools/call", owner_id=f"owner-{n % 64}"))

        async with anyio.create_task_group() as group:
            for n in range(256):
                group.start_soon(one, n)
        listed = [
            record
            for owner in range(64)
            for record in (await store.list(owner_id=f"owner-{owner}", limit=100)).tasks
        ]
    assert len(created) == 256
    assert {r.task.task_id for r in listed} == {r.task.task_id for r in created}
