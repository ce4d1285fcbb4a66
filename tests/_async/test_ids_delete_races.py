"""Races of a caller-chosen id and of ``delete``, on every backend.

Written for the async store, whose racers are tasks; scripts/unasync.py derives
the blocking twin, whose racers are threads (``tests/concurrently.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import TaskAlreadyExists, TaskNotFound, TaskStatus
from tests._async.test_wait_races import GUARD, on_subscribed, registrations
from tests.concurrently import async_background, async_counter, async_together

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"


@pytest.mark.anyio
async def test_of_concurrent_creates_with_one_chosen_id_exactly_one_succeeds(
    async_make_store: StoreFactory,
) -> None:
    stores = [async_make_store() for _ in range(4)]

    async def create(store: ts.GenericTaskStore, method: str) -> ts.TaskRecord | None:
        try:
            return await store.create(method, owner_id=OWNER, task_id="the-one")
        except TaskAlreadyExists:
            return None

    outcomes = await async_together(
        [partial(create, stores[n % len(stores)], f"method/{n}") for n in range(12)]
    )
    created = [record for record in outcomes if record is not None]
    assert len(created) == 1
    assert outcomes.count(None) == 11
    stored = await stores[0].get("the-one", owner_id=OWNER)
    assert stored.request_method == created[0].request_method
    assert stored.version == 1


@pytest.mark.anyio
async def test_a_delete_wakes_a_waiter_which_then_finds_the_task_gone(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, deleter = async_make_store(), async_make_store()
    task_id = (await deleter.create(METHOD, owner_id=OWNER)).task.task_id
    counter = async_counter(1)
    on_subscribed(monkeypatch, waiter_store, counter)
    raised: list[BaseException] = []

    async def wait() -> None:
        try:
            await waiter_store.wait(task_id, owner_id=OWNER, until_terminal=True, timeout=GUARD)
        except TaskNotFound as exc:
            raised.append(exc)

    async with async_background() as spawn:
        spawn(wait)
        await counter.all_in()
        assert await deleter.delete(task_id, owner_id=OWNER) is True
    assert [type(exc) for exc in raised] == [TaskNotFound]
    assert registrations(waiter_store) == 0


@pytest.mark.anyio
async def test_a_delete_racing_with_status_changes_removes_the_task_all_the_same(
    async_make_store: StoreFactory,
) -> None:
    deleter, writer = async_make_store(), async_make_store()
    task_id = (await writer.create(METHOD, owner_id=OWNER)).task.task_id

    async def flip() -> bool:
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
        return True

    async def remove() -> bool:
        await anyio.sleep(0.005)
        return await deleter.delete(task_id, owner_id=OWNER)

    assert await async_together([flip, remove]) == [True, True]
    with pytest.raises(TaskNotFound):
        await writer.get(task_id, owner_id=OWNER)
