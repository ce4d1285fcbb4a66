"""RedisTaskStore, the MCP SDK's TaskStore, on every backend.

The first part is what the SDK's own tests (tests/experimental/tasks/server/test_store.py
of python-sdk 1.23 to 1.x) expect of a TaskStore, rewritten for this store; the second
is what a store shared by several processes adds: owners, TTL from creation, results
that come back as their own type, and waits that lose no wakeup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.context import TaskContext
from mcp.shared.experimental.tasks.helpers import cancel_task, task_execution
from mcp.shared.experimental.tasks.store import TaskStore as SdkTaskStore
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    CreateMessageResult,
    ElicitResult,
    Result,
    Task,
    TaskMetadata,
    TextContent,
)

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import StoreConfig
from taskstore_redis.mcp1 import RedisTaskStore

StoreFactory = Callable[..., ts.GenericTaskStore]
GUARD = 30.0
"""A timeout only a lost wakeup reaches."""
MINUTE = TaskMetadata(ttl=60_000)


@pytest.fixture
def make(async_make_store: StoreFactory) -> Callable[..., RedisTaskStore]:
    """Build adapters on one shared storage of the parametrized backend (as two processes)."""

    def build(owner: str = "server", config: StoreConfig | None = None, **options: Any) -> Any:
        return RedisTaskStore(async_make_store(config=config), owner, **options)

    return build


@pytest.fixture
def store(make: Callable[..., RedisTaskStore]) -> RedisTaskStore:
    return make()


# --- what the SDK's tests expect of a TaskStore ---------------------------------------------


@pytest.mark.anyio
async def test_it_is_an_sdk_task_store(store: RedisTaskStore) -> None:
    assert isinstance(store, SdkTaskStore)


@pytest.mark.anyio
async def test_create_and_get(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    assert task.taskId
    assert task.status == "working"
    assert task.ttl == 60_000
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.taskId == task.taskId
    assert retrieved.status == "working"
    assert retrieved == task


@pytest.mark.anyio
async def test_create_with_custom_id(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE, task_id="my-custom-id")
    assert task.taskId == "my-custom-id"
    assert task.status == "working"
    retrieved = await store.get_task("my-custom-id")
    assert retrieved is not None
    assert retrieved.taskId == "my-custom-id"


@pytest.mark.anyio
async def test_create_duplicate_id_raises(store: RedisTaskStore) -> None:
    await store.create_task(metadata=MINUTE, task_id="duplicate")
    with pytest.raises(ValueError, match="already exists"):
        await store.create_task(metadata=MINUTE, task_id="duplicate")


@pytest.mark.anyio
async def test_get_nonexistent_returns_none(store: RedisTaskStore) -> None:
    assert await store.get_task("nonexistent") is None


@pytest.mark.anyio
async def test_update_status(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    updated = await store.update_task(task.taskId, status="completed", status_message="All done!")
    assert updated.status == "completed"
    assert updated.statusMessage == "All done!"
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.status == "completed"
    assert retrieved.statusMessage == "All done!"


@pytest.mark.anyio
async def test_update_nonexistent_raises(store: RedisTaskStore) -> None:
    with pytest.raises(ValueError, match="not found"):
        await store.update_task("nonexistent", status="completed")


@pytest.mark.anyio
async def test_store_and_get_result(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    result = CallToolResult(content=[TextContent(type="text", text="Result data")])
    await store.store_result(task.taskId, result)
    retrieved = await store.get_result(task.taskId)
    assert retrieved == result
    assert type(retrieved) is CallToolResult


@pytest.mark.anyio
async def test_get_result_nonexistent_returns_none(store: RedisTaskStore) -> None:
    assert await store.get_result("nonexistent") is None


@pytest.mark.anyio
async def test_get_result_no_result_returns_none(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    assert await store.get_result(task.taskId) is None


@pytest.mark.anyio
async def test_list_tasks(store: RedisTaskStore) -> None:
    for _ in range(3):
        await store.create_task(metadata=MINUTE)
    tasks, next_cursor = await store.list_tasks()
    assert len(tasks) == 3
    assert next_cursor is None


@pytest.mark.anyio
async def test_list_tasks_pagination(make: Callable[..., RedisTaskStore]) -> None:
    store = make(page_size=2)
    created = {(await store.create_task(metadata=MINUTE)).taskId for _ in range(5)}
    tasks, next_cursor = await store.list_tasks()
    assert len(tasks) == 2
    assert next_cursor is not None
    seen = [task.taskId for task in tasks]
    tasks, next_cursor = await store.list_tasks(cursor=next_cursor)
    assert len(tasks) == 2
    assert next_cursor is not None
    seen += [task.taskId for task in tasks]
    tasks, next_cursor = await store.list_tasks(cursor=next_cursor)
    assert len(tasks) == 1
    assert next_cursor is None
    seen += [task.taskId for task in tasks]
    assert sorted(seen) == sorted(created)


@pytest.mark.anyio
async def test_list_tasks_invalid_cursor(store: RedisTaskStore) -> None:
    await store.create_task(metadata=MINUTE)
    with pytest.raises(ValueError, match="Invalid cursor"):
        await store.list_tasks(cursor="invalid-cursor")


@pytest.mark.anyio
async def test_delete_task(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    assert await store.delete_task(task.taskId) is True
    assert await store.get_task(task.taskId) is None
    assert await store.delete_task(task.taskId) is False


@pytest.mark.anyio
async def test_store_result_nonexistent_raises(store: RedisTaskStore) -> None:
    result = CallToolResult(content=[TextContent(type="text", text="Result")])
    with pytest.raises(ValueError, match="not found"):
        await store.store_result("nonexistent-id", result)


@pytest.mark.anyio
async def test_create_task_with_null_ttl_never_expires(
    make: Callable[..., RedisTaskStore],
) -> None:
    store = make(config=StoreConfig(default_ttl_ms=None))
    task = await store.create_task(metadata=TaskMetadata(ttl=None))
    assert task.ttl is None
    await store.list_tasks()
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.ttl is None


async def sleep_past_ttl(task: Task) -> None:
    """Sleep until 50 ms after ``task``'s TTL ran out (counted from its creation)."""
    assert task.ttl is not None
    end = task.createdAt + timedelta(milliseconds=task.ttl + 50)
    await anyio.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))


@pytest.mark.anyio
async def test_an_expired_task_is_gone_for_get_list_and_result(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=1_000))
    await store.store_result(task.taskId, CallToolResult(content=[]))
    await sleep_past_ttl(task)
    assert await store.get_task(task.taskId) is None
    assert await store.get_result(task.taskId) is None
    assert await store.list_tasks() == ([], None)
    with pytest.raises(ValueError, match="not found"):
        await store.update_task(task.taskId, status="completed")


@pytest.mark.anyio
@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
async def test_terminal_status_transition_rejected(store: RedisTaskStore, terminal: str) -> None:
    task = await store.create_task(metadata=MINUTE)
    await store.update_task(task.taskId, status=terminal)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Cannot transition from terminal status"):
        await store.update_task(task.taskId, status="working")
    other = "failed" if terminal != "failed" else "completed"
    with pytest.raises(ValueError, match="Cannot transition from terminal status"):
        await store.update_task(task.taskId, status=other)  # type: ignore[arg-type]
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.status == terminal


@pytest.mark.anyio
async def test_terminal_status_allows_same_status(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    await store.update_task(task.taskId, status="completed")
    updated = await store.update_task(task.taskId, status="completed")
    assert updated.status == "completed"
    updated = await store.update_task(task.taskId, status_message="Updated message")
    assert updated.statusMessage == "Updated message"
    assert updated.status == "completed"


@pytest.mark.anyio
async def test_wait_for_update_nonexistent_raises(store: RedisTaskStore) -> None:
    with pytest.raises(ValueError, match="not found"):
        await store.wait_for_update("nonexistent-task-id")


@pytest.mark.anyio
@pytest.mark.parametrize("start", ["working", "input_required"])
async def test_cancel_task_succeeds_for_an_open_task(store: RedisTaskStore, start: str) -> None:
    task = await store.create_task(metadata=MINUTE)
    if start != "working":
        await store.update_task(task.taskId, status="input_required")
    result = await cancel_task(store, task.taskId)
    assert result.taskId == task.taskId
    assert result.status == "cancelled"
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.status == "cancelled"


@pytest.mark.anyio
async def test_cancel_task_rejects_nonexistent_task(store: RedisTaskStore) -> None:
    with pytest.raises(McpError) as exc_info:
        await cancel_task(store, "nonexistent-task-id")
    assert exc_info.value.error.code == INVALID_PARAMS
    assert "not found" in exc_info.value.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
async def test_cancel_task_rejects_a_terminal_task(store: RedisTaskStore, terminal: str) -> None:
    task = await store.create_task(metadata=MINUTE)
    await store.update_task(task.taskId, status=terminal)  # type: ignore[arg-type]
    with pytest.raises(McpError) as exc_info:
        await cancel_task(store, task.taskId)
    assert exc_info.value.error.code == INVALID_PARAMS
    assert f"terminal state '{terminal}'" in exc_info.value.error.message


@pytest.mark.anyio
async def test_the_sdks_task_context_completes_a_task_with_its_result(
    store: RedisTaskStore,
) -> None:
    task = await store.create_task(metadata=MINUTE)
    context = TaskContext(task, store)
    await context.update_status("halfway")
    result = CallToolResult(content=[TextContent(type="text", text="done")])
    await context.complete(result)
    final = await store.get_task(task.taskId)
    assert final is not None
    assert final.status == "completed"
    assert await store.get_result(task.taskId) == result


@pytest.mark.anyio
async def test_the_sdks_task_execution_fails_the_task_on_an_exception(
    store: RedisTaskStore,
) -> None:
    task = await store.create_task(metadata=MINUTE)
    async with task_execution(task.taskId, store):
        raise RuntimeError("disk full")
    final = await store.get_task(task.taskId)
    assert final is not None
    assert final.status == "failed"
    assert final.statusMessage == "disk full"


# --- what a shared store adds ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_task_created_by_one_process_is_seen_and_finished_by_another(
    make: Callable[..., RedisTaskStore],
) -> None:
    first, second = make(), make()
    task = await first.create_task(metadata=MINUTE)
    result = CallToolResult(content=[TextContent(type="text", text="from the second")])
    await second.store_result(task.taskId, result)
    await second.update_task(task.taskId, status="completed")
    done = await first.get_task(task.taskId)
    assert done is not None
    assert done.status == "completed"
    assert await first.get_result(task.taskId) == result


@pytest.mark.anyio
async def test_owners_never_see_each_others_tasks(make: Callable[..., RedisTaskStore]) -> None:
    alice, bob = make("alice"), make("bob")
    task = await alice.create_task(metadata=MINUTE, task_id="shared-name")
    await alice.store_result(task.taskId, CallToolResult(content=[]))
    assert await bob.get_task("shared-name") is None
    assert await bob.get_result("shared-name") is None
    assert await bob.list_tasks() == ([], None)
    assert await bob.delete_task("shared-name") is False
    with pytest.raises(ValueError, match="not found"):
        await bob.update_task("shared-name", status="cancelled")
    with pytest.raises(ValueError, match="not found"):
        await bob.store_result("shared-name", CallToolResult(content=[]))
    own = await bob.create_task(metadata=MINUTE, task_id="shared-name")  # its own, no clash
    assert own.taskId == "shared-name"
    still = await alice.get_task("shared-name")
    assert still is not None
    assert still.createdAt == task.createdAt


@pytest.mark.anyio
async def test_the_owner_can_be_derived_for_each_call(
    async_make_store: StoreFactory,
) -> None:
    current = ["alice"]
    store = RedisTaskStore(async_make_store(), lambda: current[0])
    task = await store.create_task(metadata=MINUTE)
    current[0] = "bob"
    assert await store.get_task(task.taskId) is None
    current[0] = "alice"
    assert await store.get_task(task.taskId) is not None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "result",
    [
        pytest.param(
            CallToolResult(
                content=[TextContent(type="text", text="hi")],
                structuredContent={"n": 1, "items": [1.5, None, "x"]},
                isError=False,
                _meta={"trace": "abc"},
            ),
            id="call-tool",
        ),
        pytest.param(
            CreateMessageResult(
                role="assistant", content=TextContent(type="text", text="ok"), model="m"
            ),
            id="create-message",
        ),
        pytest.param(ElicitResult(action="accept", content={"name": "x"}), id="elicit"),
        pytest.param(Result(extra_field=[1, 2]), id="plain-result-with-extras"),  # type: ignore[call-arg]
    ],
)
async def test_a_result_comes_back_as_the_same_type_and_equal(
    make: Callable[..., RedisTaskStore], result: Result
) -> None:
    writer, reader = make(), make()
    task = await writer.create_task(metadata=MINUTE)
    await writer.store_result(task.taskId, result)
    retrieved = await reader.get_result(task.taskId)
    assert type(retrieved) is type(result)
    assert retrieved == result


class ReportResult(Result):
    """A result type of the server's own."""

    pages: int


@pytest.mark.anyio
async def test_a_result_of_a_type_of_ones_own_comes_back_as_it_when_registered(
    make: Callable[..., RedisTaskStore],
) -> None:
    writer = make()
    reader = make(result_types=[ReportResult])
    unaware = make()
    task = await writer.create_task(metadata=MINUTE)
    await writer.store_result(task.taskId, ReportResult(pages=3))
    assert await reader.get_result(task.taskId) == ReportResult(pages=3)
    plain = await unaware.get_result(task.taskId)
    assert type(plain) is Result
    assert plain.model_dump()["pages"] == 3


@pytest.mark.anyio
async def test_a_submitted_task_is_run_by_a_queue_worker_and_its_plain_result_read_back(
    make: Callable[..., RedisTaskStore],
) -> None:
    server, other = make(), make()
    task = await server.submit_task(MINUTE, {"text": "hi"}, queue="tools", max_attempts=2)
    assert task.status == "working" and task.ttl == 60_000
    assert await other.get_task(task.taskId) == task

    lease = await other.store.claim("tools", timeout=GUARD)
    assert lease is not None and lease.task_id == task.taskId and lease.params == {"text": "hi"}
    tool_result = {"content": [{"type": "text", "text": "hi"}], "isError": False}
    await lease.complete("completed", None, tool_result)  # as run_worker does

    done = await server.get_task(task.taskId)
    assert done is not None and done.status == "completed"
    result = await server.get_result(task.taskId)
    assert type(result) is Result
    assert result.model_dump(by_alias=True, exclude_none=True) == tool_result
    assert CallToolResult.model_validate(result.model_dump(by_alias=True)) == CallToolResult(
        content=[TextContent(type="text", text="hi")]
    )


@pytest.mark.anyio
async def test_submit_task_refuses_params_that_are_not_plain_json(store: RedisTaskStore) -> None:
    with pytest.raises(ValueError, match="params"):
        await store.submit_task(MINUTE, {"not": {1, 2}}, queue="tools")
    assert (await store.list_tasks())[0] == []


@pytest.mark.anyio
async def test_the_result_of_a_terminal_task_is_final(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    first = CallToolResult(content=[TextContent(type="text", text="first")])
    await store.store_result(task.taskId, first)
    await store.update_task(task.taskId, status="completed")
    with pytest.raises(ValueError, match="final"):
        await store.store_result(task.taskId, CallToolResult(content=[]))
    assert await store.get_result(task.taskId) == first


@pytest.mark.anyio
async def test_the_ttl_counts_from_creation_and_does_not_restart_when_the_task_ends(
    store: RedisTaskStore,
) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=1_000))
    await anyio.sleep(0.5)
    await store.update_task(task.taskId, status="completed")
    await sleep_past_ttl(task)  # 1 s after creation, well under 1 s after the end
    assert await store.get_task(task.taskId) is None


@pytest.mark.anyio
async def test_a_ttl_above_the_maximum_is_lowered_to_it(
    make: Callable[..., RedisTaskStore],
) -> None:
    store = make(config=StoreConfig(max_ttl_ms=10_000, default_ttl_ms=5_000))
    task = await store.create_task(metadata=TaskMetadata(ttl=999_999_999))
    assert task.ttl == 10_000
    default = await store.create_task(metadata=TaskMetadata())
    assert default.ttl == 5_000


@pytest.mark.anyio
async def test_a_message_only_update_keeps_an_open_status(store: RedisTaskStore) -> None:
    task = await store.create_task(metadata=MINUTE)
    await store.update_task(task.taskId, status="input_required", status_message="which file?")
    updated = await store.update_task(task.taskId, status_message="still waiting")
    assert (updated.status, updated.statusMessage) == ("input_required", "still waiting")
    back = await store.update_task(task.taskId, status="working")
    assert (back.status, back.statusMessage) == ("working", "still waiting")


@pytest.mark.anyio
async def test_wait_for_update_returns_when_another_process_changes_the_task(
    make: Callable[..., RedisTaskStore],
) -> None:
    waiter, writer = make(), make()
    task = await waiter.create_task(metadata=MINUTE)
    woken = anyio.Event()

    async def wait() -> None:
        await waiter.wait_for_update(task.taskId)
        woken.set()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.sleep(0.05)
            assert not woken.is_set()
            await writer.update_task(task.taskId, status="input_required")
    assert woken.is_set()


@pytest.mark.anyio
async def test_a_change_between_get_task_and_wait_for_update_is_not_lost(
    make: Callable[..., RedisTaskStore],
) -> None:
    waiter, writer = make(), make()
    task = await writer.create_task(metadata=MINUTE)
    seen = await waiter.get_task(task.taskId)
    assert seen is not None
    assert seen.status == "working"
    await writer.update_task(task.taskId, status="completed")  # before the wait starts
    with anyio.fail_after(GUARD):
        await waiter.wait_for_update(task.taskId)  # returns at once: it changed since
    done = await waiter.get_task(task.taskId)
    assert done is not None
    assert done.status == "completed"


@pytest.mark.anyio
async def test_a_write_by_another_request_of_the_same_process_is_not_lost_either(
    make: Callable[..., RedisTaskStore],
) -> None:
    store = make()
    task = await store.create_task(metadata=MINUTE)
    got = anyio.Event()
    written = anyio.Event()

    async def handler() -> None:  # like the SDK's tasks/result: get, then wait
        assert await store.get_task(task.taskId) is not None
        got.set()
        await written.wait()
        await store.wait_for_update(task.taskId)

    async def worker() -> None:
        await got.wait()
        await store.update_task(task.taskId, status="completed")
        written.set()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(handler)
            group.start_soon(worker)


@pytest.mark.anyio
async def test_notify_update_wakes_a_waiter_in_another_process(
    make: Callable[..., RedisTaskStore],
) -> None:
    waiter, notifier = make(), make()
    task = await waiter.create_task(metadata=MINUTE)
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter.wait_for_update, task.taskId)
            await anyio.sleep(0.05)
            await notifier.notify_update(task.taskId)
    unchanged = await waiter.get_task(task.taskId)
    assert unchanged is not None
    assert unchanged.status == "working"
    await notifier.notify_update("no-such-task")  # nobody waits for it: nothing happens


@pytest.mark.anyio
async def test_wait_for_update_raises_when_the_task_is_deleted_meanwhile(
    make: Callable[..., RedisTaskStore],
) -> None:
    waiter, deleter = make(), make()
    task = await waiter.create_task(metadata=MINUTE)
    raised: list[Exception] = []

    async def wait() -> None:
        try:
            await waiter.wait_for_update(task.taskId)
        except ValueError as exc:
            raised.append(exc)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.sleep(0.05)
            assert await deleter.delete_task(task.taskId)
    assert len(raised) == 1
    assert "not found" in str(raised[0])
