"""An MCP SDK 2.x server whose task tools run on queue workers, in this process or any other.

    python examples/mcp_tasks_server.py --redis-url URL --port P [--workers N] [--tokens FILE]

It serves streamable HTTP at ``http://127.0.0.1:P/mcp``. ``--workers N`` runs N
workers in this process (16 by default); with ``--workers 0`` it runs none, and
another process runs the tools: this same script with ``--worker-only``, any
number of times::

    python examples/mcp_tasks_server.py --redis-url URL --worker-only --workers 16

Without ``--tokens``, any client is accepted as the owner ``example`` (its first log
line says so). With ``--tokens FILE`` (a JSON object, bearer token to owner id),
a request needs ``Authorization: Bearer <token>`` and sees only its owner's tasks.

The task tools:

- ``slow_square(n: int, seconds: float = 0) -> int``: ``n*n`` after ``seconds``;
- ``ask_name() -> str``: asks the client for a name (elicitation), then returns
  ``"hello " + name``.

Every process sharing the Redis serves every task: ``tasks/get`` on one server
process answers for a task another one created and a worker in a third ran;
``subscriptions/listen`` with ``taskIds`` sends ``notifications/tasks`` whichever
process changed the task.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp import TaskContext, TasksExtension, TaskTools, principal_owner

logger = logging.getLogger("mcp_tasks_server")

MAX_SECONDS = 600.0
"""The longest ``slow_square`` sleep: a call cannot hold a worker for ever."""

QUEUE = "mcp-example"
"""The work queue of the tool calls."""

tools = TaskTools()
"""The task tools: the servers list and submit them, the workers run them."""


@tools.tool(task="optional")
async def slow_square(n: int, seconds: float = 0, *, ctx: TaskContext) -> int:
    """Square ``n`` after sleeping ``seconds`` (at most 600)."""
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be between 0 and {MAX_SECONDS:g}")
    if seconds:
        await ctx.report_progress(0, 1, "sleeping")
        await anyio.sleep(seconds)
    return n * n


@tools.tool(task="required")
async def ask_name(ctx: TaskContext) -> str:
    """Ask the client who is there, then greet them."""
    answer = await ctx.elicit(
        "What is your name?",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )
    content = answer.get("content")
    if answer.get("action") != "accept" or not isinstance(content, dict):
        return "hello nobody"
    return "hello " + str(content.get("name", ""))


class TokenFile:
    """Bearer tokens and their owners, from a JSON object (token -> owner id)."""

    def __init__(self, path: str) -> None:
        """Read ``path``; ValueError if it is not a JSON object of non-empty strings."""
        owners = json.loads(Path(path).read_text(encoding="utf-8"))
        if (
            not isinstance(owners, dict)
            or not owners
            or not all(
                isinstance(token, str) and len(token) >= 16 and isinstance(owner, str) and owner
                for token, owner in owners.items()
            )
        ):
            raise ValueError(f"{path}: want a JSON object of tokens (16+ chars) to owner ids")
        self._owners = list(owners.items())

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token of a known bearer token (compared in constant time), else None."""
        found = None
        for known, owner in self._owners:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = owner
        return None if found is None else AccessToken(token=token, client_id=found, scopes=[])


def example_owner(ctx: ServerRequestContext[Any, Any]) -> str:
    """Every caller is the owner ``example`` (no --tokens)."""
    return "example"


def build_server(tasks: TasksExtension, port: int, tokens: TokenFile | None) -> MCPServer:
    """The MCP server: the task tools, their tasks' methods and notifications."""
    if tokens is None:
        return MCPServer("taskstore-example", extensions=[tasks], middleware=[tasks.listen])
    url = f"http://127.0.0.1:{port}"
    return MCPServer(
        "taskstore-example",
        extensions=[tasks],
        middleware=[tasks.listen],
        token_verifier=tokens,
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(url),
            resource_server_url=AnyHttpUrl(f"{url}/mcp"),
            validate_token_resource=False,  # the tokens are this server's own
        ),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis-url", required=True, help="the Redis the processes share")
    parser.add_argument("--port", type=int, default=8000, help="the HTTP port (127.0.0.1)")
    parser.add_argument("--workers", type=int, default=16, help="workers in this process")
    parser.add_argument("--tokens", help="JSON file: bearer token -> owner id")
    parser.add_argument("--prefix", default="taskstore", help="the store's key prefix")
    parser.add_argument("--worker-only", action="store_true", help="run the workers, serve no HTTP")
    parser.add_argument("--lease-ms", type=int, help="a worker's lease on a call (store default)")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    if args.worker_only and args.workers < 1:
        parser.error("--worker-only needs --workers 1 or more")
    return args


async def serve(args: argparse.Namespace) -> None:
    """Serve HTTP and/or run the workers until interrupted."""
    tokens = TokenFile(args.tokens) if args.tokens else None
    async with ts.GenericTaskStore.from_url(args.redis_url, prefix=args.prefix) as store:
        tasks = TasksExtension(
            store,
            tools=tools,
            queue=QUEUE,
            owner=principal_owner if tokens is not None else example_owner,
        )
        async with anyio.create_task_group() as group:
            if args.workers:
                group.start_soon(
                    lambda: tasks.run_workers(
                        concurrency=args.workers,
                        lease_ms=args.lease_ms,
                        handle_signals=args.worker_only,  # else uvicorn takes SIGTERM, SIGINT
                    )
                )
            if not args.worker_only:
                app = build_server(tasks, args.port, tokens).streamable_http_app()
                config = uvicorn.Config(
                    app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on"
                )
                await uvicorn.Server(config).serve()
                group.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    """Run the example."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.worker_only:
        logger.info("running %d workers, no HTTP", args.workers)
    elif args.tokens:
        logger.info("serving http://127.0.0.1:%d/mcp; owners from %s", args.port, args.tokens)
    else:
        logger.info(
            "serving http://127.0.0.1:%d/mcp; no --tokens: every client is the owner 'example'",
            args.port,
        )
    try:
        anyio.run(serve, args)
    except KeyboardInterrupt:
        return 0
    except (ValueError, OSError, ts.TaskStoreError) as error:
        print(f"mcp_tasks_server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
