"""The workers of the example MCP servers: tool calls run from a work queue in Redis.

A server answers a ``tools/call`` by submitting the call to the work queue
(``submit``) and returning the task at once; any number of these worker processes
run the calls (``run_worker``), each under a lease it keeps renewing. A worker
killed mid-call stops renewing: once its lease expires, another worker claims the
task (attempt 2) and runs the call again, and the client sees that result.

    python examples/mcp_tasks_worker.py --redis-url redis://localhost:6379 --lease-ms 5000

The tools (the job's params are ``{"tool": name, "arguments": {...}}``):

- ``slow_echo`` works ``steps`` steps of ``step_seconds`` each, saying in the
  task's status message which attempt and step it is at, then returns ``text``;
- ``greet`` asks the client for a name (the task is ``input_required`` until a
  ``tasks/update`` answers, through any server) and greets them.

Each result is an MCP ``CallToolResult`` (JSON), with the attempt that produced it
in ``structuredContent``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp.tasks_extension import TasksExtension

QUEUE = "mcp-tools"
"""The work queue the servers submit tool calls to."""

TOOLS: list[dict[str, Any]] = [
    {
        "name": "slow_echo",
        "description": "Echo a text after working some steps, as a task.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "steps": {"type": "integer"},
                "step_seconds": {"type": "number"},
            },
            "required": ["text"],
        },
    },
    {
        "name": "greet",
        "description": "Ask who is there, then greet them.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]
"""The tools, as ``tools/list`` describes them."""

TOOL_NAMES = frozenset(tool["name"] for tool in TOOLS)

ASK_NAME: dict[str, Any] = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Who is there?",
        "requestedSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}


def tool_result(text: str, attempt: int) -> dict[str, Any]:
    """A ``CallToolResult`` with ``text``, noting the attempt that made it."""
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"attempt": attempt},
        "isError": False,
    }


async def _slow_echo(
    lease: ts.Lease, store: ts.GenericTaskStore, arguments: dict[str, Any]
) -> dict[str, Any]:
    steps = int(arguments.get("steps", 4))
    pause = float(arguments.get("step_seconds", 0.25))
    for step in range(1, steps + 1):
        # Fenced writes: once this worker lost the lease they raise LeaseLost and the run
        # stops, so a stale attempt never reports progress.
        await lease.set_variables({"progress": {"attempt": lease.attempt, "step": step}})
        await lease.set_status_message(f"attempt {lease.attempt}: step {step} of {steps}")
        await asyncio.sleep(pause)
    return tool_result(str(arguments["text"]), lease.attempt)


async def _greet(lease: ts.Lease, store: ts.GenericTaskStore) -> dict[str, Any]:
    tasks = TasksExtension(store, lease.owner_id)
    if "mcp.inputRequests.name" not in lease.task.variables:  # else asked by an earlier attempt
        await tasks.request_input(lease.task_id, {"name": ASK_NAME}, status_message="asking")
    answers = await tasks.wait_for_input(lease.task_id, ["name"])
    answer = answers["name"]
    if isinstance(answer, dict) and answer.get("action") == "accept":
        content = answer.get("content")
        if isinstance(content, dict) and isinstance(content.get("name"), str):
            return tool_result(f"Hello, {content['name']}!", lease.attempt)
    return tool_result("Nobody, then.", lease.attempt)


def handler_for(store: ts.GenericTaskStore) -> Any:
    """The ``run_worker`` handler running the tool calls of ``store``'s queue."""

    async def handle(lease: ts.Lease) -> dict[str, Any]:
        params = lease.params if isinstance(lease.params, dict) else {}
        tool = params.get("tool")
        arguments = params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else {}
        if tool == "greet":
            return await _greet(lease, store)
        if tool == "slow_echo" and isinstance(arguments.get("text"), str):
            return await _slow_echo(lease, store, arguments)
        # A tool's own error is a completed task whose result says so (isError).
        return {
            "content": [{"type": "text", "text": f"cannot run {tool!r} with {arguments!r}"}],
            "isError": True,
        }

    return handle


async def work(redis_url: str, prefix: str, lease_ms: int, sweep_every_s: float) -> None:
    """Run tool calls from the queue until SIGTERM."""
    async with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as store:
        await ts.run_worker(
            store,
            handler_for(store),
            queue=QUEUE,
            lease_ms=lease_ms,
            sweep_every_s=sweep_every_s,
            idle_wait_s=min(1.0, sweep_every_s),
        )


def arguments(description: str, *, server: bool) -> argparse.ArgumentParser:
    """The command line options the example processes share: Redis, key prefix (and port)."""
    parser = argparse.ArgumentParser(description=description)
    if server:
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--owner", default="example", help="whose tasks these are")
    parser.add_argument("--redis-url", default="redis://localhost:6379")
    parser.add_argument("--prefix", default="taskstore", help="the store's key prefix")
    return parser


def main() -> None:
    """Run one worker process."""
    parser = arguments(__doc__.splitlines()[0], server=False)
    parser.add_argument("--lease-ms", type=int, default=30_000, help="how long a claim holds")
    parser.add_argument("--sweep-s", type=float, default=10.0, help="expired-lease sweep period")
    args = parser.parse_args()
    asyncio.run(work(args.redis_url, args.prefix, args.lease_ms, args.sweep_s))


if __name__ == "__main__":
    main()
