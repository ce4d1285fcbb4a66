"""The contract of ``wait`` and ``wait_for_result``: what returns at once, what raises.

Runs on every backend. Waits that another writer ends are in
tests/_async/test_wait_races.py; this file is written for the async store and
scripts/unasync.py derives its twin.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidArgument,
    NoResult,
    NotReady,
    TaskExpired,
    TaskNotFound,
    TaskStatus,
    TaskStoreError,
    WaitTimeout,
)

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
OTHER_OWNER = "bob"
METHOD = "tools/call"
GUARD = 30.0
"""A timeout that only a broken wait reaches: it turns a hang into a failure."""


def registrations(store: ts.GenericTaskStore) -> int:
    """Waiters the store's backend has registered now."""
    backend: Any = store.backend
    count: int = backend.watch_registrations()
    return count


@pytest.mark.anyio
async def test_wait_returns_at_once_when_the_version_is_already_above(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_variables(
        task_id, {"step": 1}, owner_id=OWNER
    )  # a change before the wait starts
    record = await store.wait(task_id, owner_id=OWNER, after_version=1, timeout=GUARD)
    assert record.version == 2
    assert record.variables == {"step": 1}
    assert registrations(store) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED])
async def test_wait_until_terminal_returns_at_once_for_a_terminal_task(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.update_status(task_id, status, owner_id=OWNER)
    record = await store.wait(task_id, owner_id=OWNER, until_terminal=True, timeout=GUARD)
    assert record.task.status is status


@pytest.mark.anyio
async def test_wait_with_a_zero_timeout_returns_a_change_that_already_happened(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.cancel(task_id, owner_id=OWNER)
    assert (await store.wait(task_id, owner_id=OWNER, after_version=1, timeout=0)).version == 2
    assert (await store.wait(task_id, owner_id=OWNER, until_terminal=True, timeout=0)).version == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({}, id="any-change"),
        pytest.param({"after_version": 1}, id="after-version"),
        pytest.param({"until_terminal": True}, id="until-terminal"),
    ],
)
async def test_wait_raises_wait_timeout_when_nothing_happens_and_leaves_nothing_registered(
    async_make_store: StoreFactory, arguments: dict[str, Any]
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    with pytest.raises(WaitTimeout) as raised:
        await store.wait(task_id, owner_id=OWNER, timeout=0.05, **arguments)
    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value, TaskStoreError)
    assert raised.value.task_id == task_id
    assert raised.value.code == -32603
    assert registrations(store) == 0


@pytest.mark.anyio
async def test_wait_for_result_returns_the_result_of_a_completed_task(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.complete_with_result(
        task_id, TaskStatus.COMPLETED, None, {"answer": 42}, owner_id=OWNER
    )
    assert await store.wait_for_result(task_id, owner_id=OWNER, timeout=GUARD) == {"answer": 42}


@pytest.mark.anyio
@pytest.mark.parametrize("status", [TaskStatus.CANCELLED, TaskStatus.FAILED, TaskStatus.COMPLETED])
async def test_wait_for_result_of_a_task_that_ended_without_a_result_raises_no_result(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.update_status(task_id, status, owner_id=OWNER)
    with pytest.raises(NoResult) as raised:
        await store.wait_for_result(task_id, owner_id=OWNER, timeout=GUARD)
    assert raised.value.status == status.value
    assert not isinstance(raised.value, NotReady)
    with pytest.raises(NoResult):
        await store.get_result(task_id, owner_id=OWNER)


@pytest.mark.anyio
async def test_wait_for_result_of_a_working_task_times_out(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_result(task_id, {"partial": True}, owner_id=OWNER)
    with pytest.raises(WaitTimeout):
        await store.wait_for_result(task_id, owner_id=OWNER, timeout=0.05)
    with pytest.raises(NotReady):
        await store.get_result(task_id, owner_id=OWNER)


@pytest.mark.anyio
async def test_wait_on_an_unknown_task_raises_task_not_found(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    with pytest.raises(TaskNotFound):
        await store.wait("no-such-task", owner_id=OWNER, timeout=GUARD)
    with pytest.raises(TaskNotFound):
        await store.wait_for_result("no-such-task", owner_id=OWNER, timeout=GUARD)
    assert registrations(store) == 0


@pytest.mark.anyio
async def test_wait_on_another_owners_task_raises_task_not_found(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.cancel(task_id, owner_id=OWNER)
    with pytest.raises(TaskNotFound):
        await store.wait(task_id, owner_id=OTHER_OWNER, until_terminal=True, timeout=GUARD)
    with pytest.raises(TaskNotFound):
        await store.wait_for_result(task_id, owner_id=OTHER_OWNER, timeout=GUARD)


@pytest.mark.anyio
async def test_wait_on_an_expired_task_that_cannot_change_any_more_raises_task_expired(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER, ttl_ms=50)).task.task_id
    with pytest.raises(TaskExpired):
        await store.wait(task_id, owner_id=OWNER, until_terminal=True, timeout=GUARD)


@pytest.mark.anyio
async def test_wait_on_a_purged_task_raises_task_not_found(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER, ttl_ms=50)).task.task_id
    await anyio.sleep(0.1)
    assert await store.cleanup_expired() == 1
    with pytest.raises(TaskNotFound):
        await store.wait(task_id, owner_id=OWNER, timeout=GUARD)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"after_version": -1}, id="negative-version"),
        pytest.param({"after_version": 1.5}, id="float-version"),
        pytest.param({"after_version": True}, id="bool-version"),
        pytest.param({"after_version": 1, "until_terminal": True}, id="both"),
        pytest.param({"until_terminal": 1}, id="non-bool-until-terminal"),
        pytest.param({"timeout": -0.1}, id="negative-timeout"),
        pytest.param({"timeout": float("nan")}, id="nan-timeout"),
        pytest.param({"timeout": "1"}, id="str-timeout"),
        pytest.param({"timeout": False}, id="bool-timeout"),
    ],
)
async def test_wait_with_bad_arguments_raises_invalid_argument(
    async_make_store: StoreFactory, arguments: dict[str, Any]
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    with pytest.raises(InvalidArgument):
        await store.wait(task_id, owner_id=OWNER, **arguments)
    assert registrations(store) == 0


@pytest.mark.anyio
async def test_wait_for_result_with_a_bad_timeout_raises_invalid_argument(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    with pytest.raises(InvalidArgument):
        await store.wait_for_result(task_id, owner_id=OWNER, timeout=-1)


@pytest.mark.anyio
async def test_many_waits_that_time_out_leave_nothing_registered(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_ids = [(await store.create(METHOD, owner_id=OWNER)).task.task_id for _ in range(3)]
    for n in range(60):
        with pytest.raises(WaitTimeout):
            await store.wait(task_ids[n % 3], owner_id=OWNER, timeout=0)
    assert registrations(store) == 0


def test_the_new_errors_pickle_with_their_attributes() -> None:
    for error in (NoResult("t-1", "cancelled"), WaitTimeout("t-1", 2.5)):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert vars(copy) == vars(error)
        assert str(copy) == str(error)
