"""A FastMCP 4 server with fastmcp-tasks (Docket on Redis), for the client tests.

    python tests/fastmcp_tasks_app.py --redis-url URL --port P

Run in a process of its own (``tests/example_servers.running``), so the third-party
server's connections and tasks never share the test process. Its task tools:
``slow_square`` (n*n after 0.2 s), ``greet`` (asks a name through ``InputRequiredResult``),
``forever``, and the plain tool ``plain``.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta
from typing import Any

import anyio
import fastmcp_tasks
import mcp_types
import uvicorn
from fastmcp import Context, FastMCP
from fastmcp.utilities.tasks import TaskConfig

FAST_POLL = TaskConfig(mode="optional", poll_interval=timedelta(milliseconds=50))


def fastmcp_server(redis_url: str) -> FastMCP:
    """A FastMCP 4 server with fastmcp-tasks on its own Docket queue in the suite's Redis."""
    server = FastMCP("taskstore-redis-client-tests")
    server.add_extension(
        fastmcp_tasks.TasksExtension(url=redis_url, name=f"client-tests-{uuid.uuid4().hex[:8]}")
    )

    @server.tool(task=FAST_POLL)
    async def slow_square(n: int) -> int:
        await anyio.sleep(0.2)
        return n * n

    @server.tool(task=FAST_POLL)
    async def greet(ctx: Context) -> Any:
        answers = ctx.input_responses or {}
        answer = answers.get("name")
        if not isinstance(answer, mcp_types.ElicitResult) or answer.content is None:
            return mcp_types.InputRequiredResult(
                input_requests={
                    "name": mcp_types.ElicitRequest(
                        params=mcp_types.ElicitRequestFormParams(
                            message="Your name?",
                            requested_schema={
                                "type": "object",
                                "properties": {"value": {"type": "string"}},
                                "required": ["value"],
                            },
                        )
                    )
                }
            )
        return f"hello {answer.content['value']}"

    @server.tool(task=FAST_POLL)
    async def forever() -> str:
        await anyio.sleep(3600)
        return "never"

    @server.tool
    def plain(n: int) -> int:
        return n + 1

    return server


def main() -> None:
    """Serve streamable HTTP at http://127.0.0.1:PORT/mcp until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = fastmcp_server(args.redis_url).http_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws="none")


if __name__ == "__main__":
    main()
