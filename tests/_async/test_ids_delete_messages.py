"""The contract of a caller-chosen task id, of ``delete`` and of ``set_status_message``.

Runs on every backend; written for the async store, scripts/unasync.py derives
the blocking twin. Races (concurrent creates of one id, a waiter woken by a
delete) are in tests/_async/test_ids_delete_races.py.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidArgument,
    InvalidTransition,
    ResourceExhausted,
    SecurityConfig,
    StoreConfig,
    TaskAlreadyExists,
    TaskExpired,
    TaskNotFound,
    TaskStatus,
)

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
OTHER_OWNER = "bob"
METHOD = "tools/call"
CHOSEN = "job-42"

WORKING = TaskStatus.WORKING
INPUT_REQUIRED = TaskStatus.INPUT_REQUIRED
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED


async def listed_ids(store: ts.GenericTaskStore, owner_id: str = OWNER) -> list[str]:
    """Every task id of ``owner_id``, following the cursors."""
    found: list[str] = []
    cursor = None
    while True:
        page = await store.list(owner_id=owner_id, cursor=cursor, limit=2)
        found.extend(record.task.task_id for record in page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            return found


async def reach(store: ts.GenericTaskStore, task_id: str, status: TaskStatus) -> None:
    """Move a fresh ``working`` task to ``status`` by one allowed move (or none)."""
    if status is not WORKING:
        await store.update_status(task_id, status, owner_id=OWNER)


# --- create with a chosen id ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "task_id",
    ["job-42", "a b:c{d}*?", "é-ünïcode-✓", "0b0f2f39-3a09-4c8e-9a39-3b1c3c0e1c11", "x" * 300],
    ids=["plain", "key-characters", "unicode", "uuid", "long"],
)
async def test_create_with_a_chosen_id_makes_a_working_task_with_that_id(
    async_make_store: StoreFactory, task_id: str
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, 60_000, owner_id=OWNER, task_id=task_id)
    assert record.task.task_id == task_id
    assert record.task.status is WORKING
    assert record.version == 1
    assert await store.get(task_id, owner_id=OWNER) == record
    assert await listed_ids(store) == [task_id]


@pytest.mark.anyio
async def test_a_chosen_id_the_owner_already_has_is_task_already_exists_and_writes_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    first = await store.create(METHOD, 60_000, owner_id=OWNER, task_id=CHOSEN)
    await store.set_variables(CHOSEN, {"step": 1}, owner_id=OWNER)
    before = await store.get(CHOSEN, owner_id=OWNER)
    with pytest.raises(TaskAlreadyExists) as raised:
        await store.create("other/method", 5_000, owner_id=OWNER, task_id=CHOSEN)
    assert raised.value.task_id == CHOSEN
    assert raised.value.code == -32602
    assert await store.get(CHOSEN, owner_id=OWNER) == before
    assert before.task.created_at == first.task.created_at
    assert await listed_ids(store) == [CHOSEN]


@pytest.mark.anyio
async def test_a_chosen_id_stays_taken_by_an_expired_task_until_it_is_purged(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    await store.create(METHOD, 50, owner_id=OWNER, task_id=CHOSEN)
    await anyio.sleep(0.1)
    with pytest.raises(TaskAlreadyExists):
        await store.create(METHOD, owner_id=OWNER, task_id=CHOSEN)
    assert await store.cleanup_expired() == 1
    again = await store.create(METHOD, 60_000, owner_id=OWNER, task_id=CHOSEN)
    assert (await store.get(CHOSEN, owner_id=OWNER)).task.created_at == again.task.created_at
    assert await listed_ids(store) == [CHOSEN]


@pytest.mark.anyio
async def test_a_chosen_id_is_free_again_once_its_task_vanished_by_itself(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(expired_retention_ms=50))
    await store.create(METHOD, 50, owner_id=OWNER, task_id=CHOSEN)
    await anyio.sleep(0.3)  # past expiry and retention: gone without a purge
    again = await store.create(METHOD, 60_000, owner_id=OWNER, task_id=CHOSEN)
    assert again.version == 1
    assert await listed_ids(store) == [CHOSEN]


@pytest.mark.anyio
async def test_another_owner_may_use_the_same_chosen_id_for_a_task_of_its_own(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    mine = await store.create(METHOD, owner_id=OWNER, task_id=CHOSEN)
    theirs = await store.create(METHOD, owner_id=OTHER_OWNER, task_id=CHOSEN)
    await store.update_status(CHOSEN, COMPLETED, owner_id=OTHER_OWNER)
    assert (await store.get(CHOSEN, owner_id=OWNER)) == mine
    assert (await store.get(CHOSEN, owner_id=OTHER_OWNER)).task.status is COMPLETED
    assert theirs.owner_id == OTHER_OWNER


@pytest.mark.anyio
@pytest.mark.parametrize(
    "task_id",
    [pytest.param("", id="empty"), pytest.param(42, id="int"), pytest.param(b"id", id="bytes")],
)
async def test_create_rejects_a_bad_chosen_id_and_creates_nothing(
    async_make_store: StoreFactory, task_id: object
) -> None:
    store = async_make_store()
    with pytest.raises(InvalidArgument):
        await store.create(METHOD, owner_id=OWNER, task_id=task_id)  # type: ignore[arg-type]
    assert await listed_ids(store) == []


@pytest.mark.anyio
async def test_a_create_with_a_chosen_id_still_keeps_the_owner_quota(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=1))
    await store.create(METHOD, owner_id=OWNER, task_id="first")
    with pytest.raises(ResourceExhausted):
        await store.create(METHOD, owner_id=OWNER, task_id="second")
    with pytest.raises(TaskNotFound):
        await store.get("second", owner_id=OWNER)


# --- delete -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", list(TaskStatus))
async def test_delete_removes_a_task_of_any_status_and_says_true(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, status)
    kept = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    assert await store.delete(task_id, owner_id=OWNER) is True
    with pytest.raises(TaskNotFound):
        await store.get(task_id, owner_id=OWNER)
    assert await listed_ids(store) == [kept]


@pytest.mark.anyio
async def test_delete_of_a_missing_or_already_deleted_task_says_false(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    assert await store.delete("no-such-task", owner_id=OWNER) is False
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    assert await store.delete(task_id, owner_id=OWNER) is True
    assert await store.delete(task_id, owner_id=OWNER) is False


@pytest.mark.anyio
async def test_delete_of_another_owners_task_says_false_and_touches_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OTHER_OWNER, task_id=CHOSEN)
    assert await store.delete(CHOSEN, owner_id=OWNER) is False
    assert await store.get(CHOSEN, owner_id=OTHER_OWNER) == record
    assert await listed_ids(store, OTHER_OWNER) == [CHOSEN]


@pytest.mark.anyio
async def test_delete_sees_the_latest_state_of_a_task_another_store_changed(
    async_make_store: StoreFactory,
) -> None:
    reader, writer = async_make_store(), async_make_store()
    task_id = (await reader.create(METHOD, owner_id=OWNER)).task.task_id
    await reader.get(task_id, owner_id=OWNER)  # remembered by the reader at version 1
    await writer.update_status(task_id, INPUT_REQUIRED, "which file?", owner_id=OWNER)
    assert await reader.delete(task_id, owner_id=OWNER) is True
    with pytest.raises(TaskNotFound):
        await writer.get(task_id, owner_id=OWNER)


@pytest.mark.anyio
async def test_delete_frees_the_owner_quota(async_make_store: StoreFactory) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=1))
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    with pytest.raises(ResourceExhausted):
        await store.create(METHOD, owner_id=OWNER)
    assert await store.delete(task_id, owner_id=OWNER)
    await store.create(METHOD, owner_id=OWNER)


@pytest.mark.anyio
async def test_a_deleted_chosen_id_can_be_created_again_and_is_listed_once(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    await store.create(METHOD, owner_id=OWNER, task_id=CHOSEN)
    assert await store.delete(CHOSEN, owner_id=OWNER)
    again = await store.create("other/method", owner_id=OWNER, task_id=CHOSEN)
    assert again.request_method == "other/method"
    assert await listed_ids(store) == [CHOSEN]


@pytest.mark.anyio
async def test_delete_removes_an_expired_task_which_cleanup_then_does_not_count(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, 50, owner_id=OWNER)).task.task_id
    await anyio.sleep(0.1)
    assert await store.delete(task_id, owner_id=OWNER) is True
    assert await store.cleanup_expired() == 0
    assert await listed_ids(store) == []


@pytest.mark.anyio
async def test_delete_rejects_a_bad_id_and_deletes_nothing(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    with pytest.raises(InvalidArgument):
        await store.delete(42, owner_id=OWNER)  # type: ignore[arg-type]
    assert await listed_ids(store) == [task_id]


# --- set_status_message -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [WORKING, INPUT_REQUIRED])
async def test_set_status_message_changes_only_the_message_of_an_open_task(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    created = await store.create(METHOD, owner_id=OWNER)
    task_id = created.task.task_id
    await reach(store, task_id, status)
    before = await store.get(task_id, owner_id=OWNER)
    await anyio.sleep(0.002)  # a later millisecond for last_updated_at
    updated = await store.set_status_message(task_id, "3 of 10 files done", owner_id=OWNER)
    assert updated.task.status is status
    assert updated.task.status_message == "3 of 10 files done"
    assert updated.version == before.version + 1
    assert updated.task.last_updated_at > before.task.last_updated_at
    assert updated.task.created_at == created.task.created_at
    assert await store.get(task_id, owner_id=OWNER) == updated


@pytest.mark.anyio
async def test_set_status_message_to_none_clears_it(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_status_message(task_id, "starting", owner_id=OWNER)
    cleared = await store.set_status_message(task_id, None, owner_id=OWNER)
    assert cleared.task.status_message is None
    assert "statusMessage" not in cleared.to_wire_task()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [COMPLETED, FAILED, CANCELLED])
async def test_set_status_message_keeps_a_terminal_task_terminal_and_its_result(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.complete_with_result(task_id, status, "ended", {"n": 1}, owner_id=OWNER)
    updated = await store.set_status_message(task_id, "ended: see the log", owner_id=OWNER)
    assert updated.task.status is status
    assert updated.task.status_message == "ended: see the log"
    assert await store.get_result(task_id, owner_id=OWNER) == {"n": 1}
    with pytest.raises(InvalidTransition):
        await store.update_status(task_id, WORKING, owner_id=OWNER)


@pytest.mark.anyio
async def test_set_status_message_of_an_expired_task_is_task_expired_and_changes_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, 50, owner_id=OWNER)).task.task_id
    await anyio.sleep(0.1)
    before = await store.get(task_id, owner_id=OWNER)
    with pytest.raises(TaskExpired):
        await store.set_status_message(task_id, "late", owner_id=OWNER)
    assert await store.get(task_id, owner_id=OWNER) == before


@pytest.mark.anyio
async def test_set_status_message_rejects_a_bad_message_and_changes_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    before = await store.get(task_id, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.set_status_message(task_id, 42, owner_id=OWNER)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        too_long = "x" * (store.config.max_string_length + 1)
        await store.set_status_message(task_id, too_long, owner_id=OWNER)
    assert await store.get(task_id, owner_id=OWNER) == before


@pytest.mark.anyio
async def test_set_status_message_of_a_missing_or_foreign_task_is_task_not_found(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    await store.create(METHOD, owner_id=OTHER_OWNER, task_id=CHOSEN)
    with pytest.raises(TaskNotFound):
        await store.set_status_message(CHOSEN, "mine?", owner_id=OWNER)
    with pytest.raises(TaskNotFound):
        await store.set_status_message("no-such-task", "hello", owner_id=OWNER)
    assert (await store.get(CHOSEN, owner_id=OTHER_OWNER)).task.status_message is None


@pytest.mark.anyio
async def test_a_waiter_sees_a_message_only_update_as_a_change(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_status_message(task_id, "halfway", owner_id=OWNER)
    record = await store.wait(task_id, owner_id=OWNER, after_version=1, timeout=30)
    assert record.task.status_message == "halfway"
