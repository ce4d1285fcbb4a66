"""The fastmcp-tasks side of the MCP task-call benchmark: a FastMCP 4 server with one task tool.

    python benchmarks/mcp_tasks/fastmcp_tasks_server.py --redis-url URL --port P [--workers N]
    python benchmarks/mcp_tasks/fastmcp_tasks_server.py --redis-url URL --worker-only --workers N

The server serves streamable HTTP at ``http://127.0.0.1:P/mcp`` with the tool
``slow_square(n: int, seconds: float = 0) -> int``, declared ``task=TaskConfig(mode="required")``
so every call runs as a SEP-2663 task through fastmcp-tasks' ``TasksExtension`` (Docket on
Redis). Everything else is fastmcp-tasks' default (poll interval advertised to clients 5 s,
Docket's ``minimum_check_interval`` 50 ms, execution TTL), except:

- ``--workers N``: how many tasks the process's Docket worker runs at once (Docket's
  ``concurrency``; the default of fastmcp-tasks is 10). ``--workers 0`` runs no worker in the
  server: fastmcp-tasks always starts one in the server's lifespan, so this script then opens
  the Docket (to enqueue and to answer ``tasks/get``) the way ``fastmcp_tasks.lifespan`` does,
  without its ``Worker``.
- ``--worker-only``: no HTTP; the process runs the server's lifespan, hence its Docket worker,
  until it is stopped, exactly as ``python -m fastmcp_tasks.worker_cli worker <server file>``
  does (that command takes its settings from ``FASTMCP_DOCKET_*`` variables only).

Uvicorn logs warnings only (no access log), and the server banner is off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

from docket import Docket
from fastmcp import FastMCP
from fastmcp.utilities.tasks import TaskConfig
from fastmcp_tasks import TasksExtension
from fastmcp_tasks.components import register_component_with_docket
from fastmcp_tasks.dependencies import _current_docket

DOCKET_NAME = "mcp-tasks-bench"


class EnqueueOnlyTasksExtension(TasksExtension):
    """fastmcp-tasks' extension with the Docket of its lifespan but without the Worker.

    The same steps as ``fastmcp_tasks.lifespan.docket_lifespan`` up to the worker: open the
    Docket, register the task components' callables, make the Docket current.
    """

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        server = self.server
        settings = self.docket_settings
        components = [c for c in await server.get_tasks() if c.task_config.supports_tasks()]
        async with Docket(name=settings.name, url=settings.url) as docket:
            server._docket = docket  # type: ignore[assignment]  # declared None in FastMCP
            for component in components:
                register_component_with_docket(component, docket)
            token = _current_docket.set(docket)
            try:
                yield
            finally:
                _current_docket.reset(token)
                server._docket = None


def build_server(redis_url: str, workers: int) -> FastMCP:
    """The benchmark's FastMCP server: ``slow_square`` as a required task."""
    mcp = FastMCP("mcp-tasks-bench")
    if workers > 0:
        mcp.add_extension(TasksExtension(url=redis_url, name=DOCKET_NAME, concurrency=workers))
    else:
        mcp.add_extension(EnqueueOnlyTasksExtension(url=redis_url, name=DOCKET_NAME))

    @mcp.tool(task=TaskConfig(mode="required"))
    async def slow_square(n: int, seconds: float = 0) -> int:
        """Return n squared after sleeping ``seconds``."""
        if seconds > 0:
            await asyncio.sleep(seconds)
        return n * n

    return mcp


async def run_worker_only(mcp: FastMCP) -> None:
    """Run the server's lifespan (its Docket worker) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with mcp._lifespan_manager():
        print("worker ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=10, help="tasks run at once (0: none)")
    parser.add_argument("--worker-only", action="store_true", help="no HTTP, only the worker")
    args = parser.parse_args()
    if args.workers < 0 or (args.worker_only and args.workers == 0):
        parser.error("--workers must be >= 0, and >= 1 with --worker-only")
    mcp = build_server(args.redis_url, args.workers)
    if args.worker_only:
        asyncio.run(run_worker_only(mcp))
        return
    mcp.run(
        transport="http",
        host=args.host,
        port=args.port,
        path="/mcp",
        log_level="warning",
        show_banner=False,
    )


if __name__ == "__main__":
    main()
