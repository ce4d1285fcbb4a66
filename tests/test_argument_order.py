"""One argument order: the task first, the owner always the keyword ``owner_id``.

Both ids are strings, so an owner given where a task id goes (or the other way
round) used to be read as the wrong id and fail late, as ``TaskNotFound``, or
create a task for the wrong owner. Now a positional owner is refused by Python
(``TypeError``) before anything is read or written, in both APIs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis._async._protocols import TaskStore as AsyncTaskStore
from taskstore_redis._sync._protocols import TaskStore as SyncTaskStore

pytestmark = pytest.mark.anyio

OWNER = "alice"
METHOD = "tools/call"

OldCall = Callable[[Any, str, str], Any]

# The calls below are in the old order on purpose: a rewrite of call sites leaves them.
OLD_ORDER: dict[str, OldCall] = {
    "create": lambda store, task_id, owner: store.create(owner, METHOD),
    "create with a TTL": lambda store, task_id, owner: store.create(owner, METHOD, 60_000),
    "submit": lambda store, task_id, owner: store.submit(owner, METHOD, {"n": 1}),
    "submit_many": lambda store, task_id, owner: store.submit_many(owner, METHOD, [{"n": 1}]),
    "resubmit": lambda store, task_id, owner: store.resubmit(task_id, owner),
    "list": lambda store, task_id, owner: store.list(owner),
    "tasks_in_progress": lambda store, task_id, owner: store.tasks_in_progress(owner),
    "get": lambda store, task_id, owner: store.get(task_id, owner),
    "update_status": lambda store, task_id, owner: store.update_status(
        task_id, owner, "input_required"
    ),
    "set_variables": lambda store, task_id, owner: store.set_variables(task_id, owner, {"k": 1}),
    "set_result": lambda store, task_id, owner: store.set_result(task_id, owner, {"r": 1}),
    "get_result": lambda store, task_id, owner: store.get_result(task_id, owner),
    "complete_with_result": lambda store, task_id, owner: store.complete_with_result(
        task_id, owner, "completed", None, {"r": 1}
    ),
    "cancel": lambda store, task_id, owner: store.cancel(task_id, owner),
    "wait": lambda store, task_id, owner: store.wait(task_id, owner, timeout=0),
    "wait_for_result": lambda store, task_id, owner: store.wait_for_result(
        task_id, owner, timeout=0
    ),
    "delete": lambda store, task_id, owner: store.delete(task_id, owner),
    "set_status_message": lambda store, task_id, owner: store.set_status_message(
        task_id, owner, "note"
    ),
}
"""Each operation called as before, the owner in its old place."""


def swapped(call: OldCall) -> OldCall:
    return lambda store, task_id, owner: call(store, owner, task_id)


SWAPPED: dict[str, OldCall] = {
    name: swapped(call)
    for name, call in OLD_ORDER.items()
    if name not in ("create", "create with a TTL", "submit", "list", "tasks_in_progress")
}
"""The same calls with the two ids swapped."""


async def settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def snapshot(store: Any, task_id: str) -> tuple[Any, Any]:
    """The task and the owner's listing: what a refused call must leave as it was."""
    record = await settle(store.get(task_id, owner_id=OWNER))
    page = await settle(store.list(owner_id=OWNER))
    return record, page.tasks


async def refused_without_a_write(store: Any, call: OldCall) -> None:
    created = await settle(store.submit(METHOD, {"n": 0}, owner_id=OWNER))
    task_id = created.task.task_id
    before = await snapshot(store, task_id)
    with pytest.raises(TypeError):
        await settle(call(store, task_id, OWNER))
    assert await snapshot(store, task_id) == before


@pytest.mark.parametrize("call", [*OLD_ORDER.values()], ids=[*OLD_ORDER])
async def test_an_old_order_call_is_refused_and_writes_nothing_async(call: OldCall) -> None:
    async with tsa.GenericTaskStore(tsa.InMemoryBackend()) as store:
        await refused_without_a_write(store, call)


@pytest.mark.parametrize("call", [*OLD_ORDER.values()], ids=[*OLD_ORDER])
async def test_an_old_order_call_is_refused_and_writes_nothing_sync(call: OldCall) -> None:
    with ts.GenericTaskStore(ts.InMemoryBackend()) as store:
        await refused_without_a_write(store, call)


@pytest.mark.parametrize("call", [*SWAPPED.values()], ids=[*SWAPPED])
async def test_swapped_ids_cannot_be_passed_positionally(call: OldCall) -> None:
    async with tsa.GenericTaskStore(tsa.InMemoryBackend()) as store:
        await refused_without_a_write(store, call)
    with ts.GenericTaskStore(ts.InMemoryBackend()) as sync_store:
        await refused_without_a_write(sync_store, call)


def owner_taking_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: signature
        for name, value in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
        and "owner_id" in (signature := inspect.signature(value)).parameters
    }


@pytest.mark.parametrize(
    "cls",
    [ts.GenericTaskStore, tsa.GenericTaskStore, SyncTaskStore, AsyncTaskStore],
    ids=["sync store", "async store", "sync protocol", "async protocol"],
)
def test_every_operation_takes_the_owner_by_keyword_after_the_task(cls: type) -> None:
    methods = owner_taking_methods(cls)
    expected = {name for name in OLD_ORDER if " " not in name}
    if not hasattr(cls, "claim"):
        # the protocol has no work queues, nor the quota's count
        expected -= {"submit", "submit_many", "resubmit", "tasks_in_progress"}
    if hasattr(cls, "schedule"):
        expected.add("schedule")  # the owner of the schedule's tasks; its name comes first
    assert set(methods) == expected
    for name, signature in methods.items():
        parameters = [p for p in signature.parameters.values() if p.name != "self"]
        assert signature.parameters["owner_id"].kind is inspect.Parameter.KEYWORD_ONLY, name
        positional = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        first = positional[0] if positional else None
        assert first in ("task_id", "request_method", "name", None), (name, first)
        assert (first == "name") == (name == "schedule"), name
        assert (first is None) == (name in ("list", "tasks_in_progress")), name


async def test_the_new_order_reaches_the_right_task() -> None:
    async with tsa.GenericTaskStore(tsa.InMemoryBackend()) as store:
        task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
        record = await store.update_status(task_id, "input_required", "why?", owner_id=OWNER)
        assert (record.owner_id, record.task.task_id) == (OWNER, task_id)
        assert record.task.status_message == "why?"
