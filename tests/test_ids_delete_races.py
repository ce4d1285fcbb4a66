"""Races of a caller-chosen id and of ``delete``, on every backend (async; needs a task group)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import TaskAlreadyExists, TaskNotFound, TaskStatus

from .test_wait_async import GUARD, Counter, on_subscribed, registrations

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"


@pytest.mark.anyio
async def test_of_concurrent_creates_with_one_chosen_id_exactly_one_succeeds(
    async_make_store: StoreFactory,
) -> None:
    stores = [async_make_store() for _ in range(4)]
    created: list[ts.TaskRecord] = []
    refused: list[TaskAlreadyExists] = []

    async def create(store: ts.GenericTaskStore, method: str) -> None:
        try:
            created.append(await store.create(method, owner_id=OWNER, task_id="the-one"))
        except TaskAlreadyExists as exc:
            refused.append(exc)

    async with anyio.create_task_group() as group:
        for n in range(12):
            group.start_soon(create, stores[n % len(stores)], f"method/{n}")
    assert len(created) == 1
    assert len(refused) == 11
    stored = await stores[0].get("the-one", owner_id=OWNER)
    assert stored.request_method == created[0].request_method
    assert stored.version == 1


@pytest.mark.anyio
async def test_a_delete_wakes_a_waiter_which_then_finds_the_task_gone(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, deleter = async_make_store(), async_make_store()
    task_id = (await deleter.create(METHOD, owner_id=OWNER)).task.task_id
    counter = Counter(1)
    on_subscribed(monkeypatch, waiter_store, counter)
    raised: list[BaseException] = []

    async def wait() -> None:
        try:
            await waiter_store.wait(task_id, owner_id=OWNER, until_terminal=True, timeout=GUARD)
        except TaskNotFound as exc:
            raised.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await counter.all_in.wait()
        assert await deleter.delete(task_id, owner_id=OWNER) is True
    assert [type(exc) for exc in raised] == [TaskNotFound]
    assert registrations(waiter_store) == 0


@pytest.mark.anyio
async def test_a_delete_racing_with_status_changes_removes_the_task_all_the_same(
    async_make_store: StoreFactory,
) -> None:
    deleter, writer = async_make_store(), async_make_store()
    task_id = (await writer.create(METHOD, owner_id=OWNER)).task.task_id
    deleted: list[bool] = []

    async def flip() -> None:
        try:
            for n in range(20):
                await writer.set_status_message(task_id, f"step {n}", owner_id=OWNER)
                await writer.update_status(
                    task_id,
                    TaskStatus.WORKING if n % 2 else TaskStatus.INPUT_REQUIRED,
                    owner_id=OWNER,
                )
        except TaskNotFound:
            pass  # the delete won: nothing left to change

    async def remove() -> None:
        await anyio.sleep(0.005)
        deleted.append(await deleter.delete(task_id, owner_id=OWNER))

    async with anyio.create_task_group() as group:
        group.start_soon(flip)
        group.start_soon(remove)
    assert deleted == [True]
    with pytest.raises(TaskNotFound):
        await writer.get(task_id, owner_id=OWNER)
