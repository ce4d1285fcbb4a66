"""TasksExtension on an MCP SDK 2.x server, in process, on every backend.

The server is a real ``MCPServer``; the client a real SDK 2.x ``Client`` with
fastmcp-tasks' ``TasksClientExtension`` (FastMCP's own client half of the
extension); the workers ``TasksExtension.run_workers`` on the same store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

pytest.importorskip("fastmcp_tasks", reason="the interop tests need the `test` extra")

from cryptography.fernet import Fernet
from fastmcp_tasks.client import TasksClientExtension as FastMCPTasksClient
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp import TaskContext, TasksExtension, TaskTools

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., ts.GenericTaskStore]
OWNER = "alice"

tools = TaskTools()


@tools.tool(task="optional")
async def square(n: int, ctx: TaskContext) -> int:
    """Square n; report where it is."""
    await ctx.report_progress(1, 2, "squaring")
    return n * n


@tools.tool(task="required")
def shout(text: str) -> str:
    """A sync tool: the text in capitals."""
    return text.upper()


@tools.tool(task="required")
async def broken(ctx: TaskContext) -> str:
    """A tool that fails."""
    raise RuntimeError("the secret internals")


@tools.tool(task="required")
async def ask(ctx: TaskContext) -> str:
    """Ask the client a name."""
    answer = await ctx.elicit(
        "Name?", {"type": "object", "properties": {"name": {"type": "string"}}}
    )
    content = answer.get("content")
    return f"hello {content['name']}" if isinstance(content, dict) else "nobody"


async def answer_ada(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada"})


@asynccontextmanager
async def serving(
    store: ts.GenericTaskStore, **options: Any
) -> AsyncIterator[tuple[Client, Client]]:
    """A server, its workers, a client with the tasks extension and one without."""
    tasks = TasksExtension(store, tools=tools, owner=lambda ctx: OWNER, queue="q", **options)
    server = MCPServer("test", extensions=[tasks], middleware=[tasks.listen])
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: tasks.run_workers(concurrency=4, handle_signals=False))
        extension = FastMCPTasksClient(elicitation_callback=answer_ada)
        async with Client(server, extensions=[extension]) as with_tasks, Client(server) as plain:
            yield with_tasks, plain
        group.cancel_scope.cancel()


async def all_tasks(store: ts.GenericTaskStore) -> list[ts.TaskRecord]:
    page = await store.list(owner_id=OWNER)
    return [await store.get(item.task.task_id, owner_id=OWNER) for item in page.tasks]


async def test_a_task_tool_runs_on_a_worker_and_its_result_reaches_the_client(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    async with serving(store) as (client, _):
        squared = await client.call_tool("square", {"n": 7})
        shouted = await client.call_tool("shout", {"text": "hi"})
        greeted = await client.call_tool("ask", {})
    assert squared.structured_content == {"result": 49}
    assert shouted.structured_content == {"result": "HI"}
    assert greeted.structured_content == {"result": "hello Ada"}
    records = await all_tasks(store)
    assert sorted(record.task.status.value for record in records) == ["completed"] * 3


async def test_without_the_capability_an_optional_tool_runs_inline_and_a_required_one_is_refused(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    async with serving(store) as (_, plain):
        inline = await plain.call_tool("square", {"n": 5})
        with pytest.raises(MCPError) as refused:
            await plain.call_tool("shout", {"text": "hi"})
    assert inline.structured_content == {"result": 25}
    assert refused.value.error.code == -32021
    assert await all_tasks(store) == []


async def test_a_tool_that_raises_completes_its_task_with_an_error_result_that_hides_internals(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    async with serving(store) as (client, _):
        result = await client.call_tool("broken", {})
    assert result.is_error is True
    assert "secret" not in str(result.content)
    [record] = await all_tasks(store)
    assert record.task.status is ts.TaskStatus.COMPLETED


async def test_bad_arguments_are_an_error_result_and_write_no_task(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    async with serving(store) as (client, _):
        result = await client.call_tool("shout", {"text": 3})
    assert result.is_error is True
    assert "text" in str(result.content)
    assert await all_tasks(store) == []


async def test_with_a_key_arguments_and_results_are_stored_sealed(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    async with serving(store, key=Fernet.generate_key()) as (client, _):
        shouted = await client.call_tool("shout", {"text": "private words"})
    assert shouted.structured_content == {"result": "PRIVATE WORDS"}
    [record] = await all_tasks(store)
    stored = repr((record.params, record.result))
    assert "private" not in stored.lower()
    assert "$sealed" in stored


def test_a_key_that_is_not_a_fernet_key_is_a_clear_error_that_does_not_show_it() -> None:
    with pytest.raises(ts.InvalidArgument) as error:
        TasksExtension(ts.GenericTaskStore(ts.InMemoryBackend()), key="hunter2-not-a-key")
    assert "hunter2" not in str(error.value)


def test_a_tool_declared_twice_or_with_an_unknown_mode_is_refused() -> None:
    local = TaskTools()
    with pytest.raises(ValueError, match="must be 'required' or 'optional'"):
        local.tool(task="forbidden")  # type: ignore[call-overload]

    @local.tool
    def once() -> int:
        return 1

    with pytest.raises(ValueError, match="already declared"):
        local.tool(name="once")(lambda: 2)
