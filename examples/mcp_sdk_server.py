"""An MCP server (MCP Python SDK 1.x, streamable HTTP) whose tasks live in Redis.

Run two of them on one Redis and a client can start a task on one and follow it,
and fetch its result, on the other:

    python examples/mcp_sdk_server.py --port 8001 --redis-url redis://localhost:6379
    python examples/mcp_sdk_server.py --port 8002 --redis-url redis://localhost:6379

The tools always run as tasks (``taskSupport: required``):

- ``slow_echo`` works for ``seconds`` seconds, reporting its progress in the task's
  status message, then returns the text it was given;
- ``greet`` asks the client for a name mid-run (elicitation), ``haiku`` asks the
  client's model for a poem (sampling): the request waits in Redis until a
  ``tasks/result`` call on any of the servers delivers it, and the answer comes back
  to the task's worker, wherever it runs;
- ``queued_echo`` is ``slow_echo`` run by a worker process from the work queue
  (``python examples/mcp_tasks_worker.py``): a worker killed mid-task leaves it
  to another once its lease expires.
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn
from mcp.server import Server
from mcp.server.experimental.task_context import ServerTaskContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.types import (
    TASK_REQUIRED,
    CallToolResult,
    CreateTaskResult,
    SamplingMessage,
    TaskMetadata,
    TextContent,
    Tool,
    ToolExecution,
)
from mcp_tasks_worker import QUEUE, arguments
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from taskstore_redis.mcp import RedisTaskMessageQueue, RedisTaskStore

# The newest 1.x SDKs mark the experimental tasks API deprecated; it is still the 1.x API.
warnings.filterwarnings("ignore", "The experimental tasks API is deprecated", DeprecationWarning)


def _tool(name: str, description: str, properties: dict[str, Any]) -> Tool:
    return Tool(
        name=name,
        description=description,
        inputSchema={"type": "object", "properties": properties},
        execution=ToolExecution(taskSupport=TASK_REQUIRED),
    )


async def _greet(task: ServerTaskContext) -> CallToolResult:
    """Ask the client for a name (the task is ``input_required`` meanwhile)."""
    answer = await task.elicit(
        message="Who is there?",
        requestedSchema={"type": "object", "properties": {"name": {"type": "string"}}},
    )
    if answer.action != "accept" or not answer.content:
        return CallToolResult(content=[TextContent(type="text", text="Nobody, then.")])
    return CallToolResult(
        content=[TextContent(type="text", text=f"Hello, {answer.content['name']}!")]
    )


async def _haiku(task: ServerTaskContext, topic: str) -> CallToolResult:
    """Ask the client's model for a haiku."""
    reply = await task.create_message(
        messages=[
            SamplingMessage(
                role="user", content=TextContent(type="text", text=f"A haiku on {topic}")
            )
        ],
        max_tokens=60,
    )
    text = reply.content.text if isinstance(reply.content, TextContent) else str(reply.content)
    return CallToolResult(content=[TextContent(type="text", text=text)])


def build_server(
    store: RedisTaskStore, queue: RedisTaskMessageQueue, name: str
) -> Server[Any, Any]:
    """A low-level MCP server with task tools, its tasks and their messages in Redis."""
    server: Server[Any, Any] = Server(name)
    support = server.experimental.enable_tasks(store=store, queue=queue)
    queue.use_handler(support.handler)  # forgets the requests answered through other servers

    @server.list_tools()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_tools() -> list[Tool]:
        return [
            _tool(
                "slow_echo",
                "Echo a text after working for some seconds, as a task.",
                {"text": {"type": "string"}, "seconds": {"type": "number"}},
            ),
            _tool("greet", "Ask who is there, then greet them.", {}),
            _tool("haiku", "Have the client's model write a haiku.", {"topic": {"type": "string"}}),
            _tool(
                "queued_echo",
                "Echo a text after working some steps, run by a worker process from the queue.",
                {
                    "text": {"type": "string"},
                    "steps": {"type": "integer"},
                    "step_seconds": {"type": "number"},
                },
            ),
        ]

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(tool: str, arguments: dict[str, Any]) -> CallToolResult | CreateTaskResult:
        context = server.request_context
        context.experimental.validate_task_mode(TASK_REQUIRED)
        if tool == "queued_echo":  # run by mcp_tasks_worker.py processes, not by this one
            metadata = context.experimental.task_metadata or TaskMetadata()
            job = {"tool": "slow_echo", "arguments": arguments}
            return CreateTaskResult(task=await store.submit_task(metadata, job, queue=QUEUE))

        async def work(task: ServerTaskContext) -> CallToolResult:
            if tool == "greet":
                return await _greet(task)
            if tool == "haiku":
                return await _haiku(task, str(arguments.get("topic", "the sea")))
            text = str(arguments["text"])
            seconds = float(arguments.get("seconds", 1.0))
            for step in range(1, 5):
                await anyio.sleep(seconds / 4)
                await task.update_status(f"{step} of 4 steps done")
            return CallToolResult(content=[TextContent(type="text", text=f"{name}: {text}")])

        # An id of our own: any session, on any server process, may then follow the task.
        created: CreateTaskResult = await context.experimental.run_task(
            work, task_id=str(uuid.uuid4())
        )
        return created

    return server


def build_app(store: RedisTaskStore, name: str) -> Starlette:
    """The ASGI app serving the MCP endpoint at ``/mcp``."""
    queue = RedisTaskMessageQueue(store)
    manager = StreamableHTTPSessionManager(app=build_server(store, queue, name))

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield
        await queue.aclose()
        await store.aclose()

    return Starlette(routes=[Mount("/mcp", app=handle)], lifespan=lifespan)


def main() -> None:
    """Serve on 127.0.0.1 at the port given."""
    args = arguments(__doc__.splitlines()[0], server=True).parse_args()
    store = RedisTaskStore.from_url(args.redis_url, args.owner, prefix=args.prefix)
    app = build_app(store, name=f"server-{args.port}")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
