"""An MCP server speaking the tasks extension (SEP-2663) as plain JSON-RPC over HTTP.

A Starlette app: every ``POST /mcp`` carries one JSON-RPC request and gets its
JSON-RPC response. A ``tools/call`` from a client that declares the extension on
the request (``_meta`` ``io.modelcontextprotocol/clientCapabilities`` ->
``extensions`` -> ``io.modelcontextprotocol/tasks``) is submitted to the work
queue and answered at once with the flat ``CreateTaskResult``; other clients get
the tool's result when it is done. ``tasks/get``, ``tasks/update`` and
``tasks/cancel`` are answered from Redis, so any number of these servers (and of
the worker processes of ``mcp_tasks_worker.py``, which run the calls) share the
tasks:

    python examples/mcp_extension_server.py --port 8001 --redis-url redis://localhost:6379
    python examples/mcp_tasks_worker.py --redis-url redis://localhost:6379

Unknown, foreign or expired tasks are JSON-RPC errors with code -32602.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from mcp_tasks_worker import QUEUE, TOOL_NAMES, TOOLS, arguments
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp.tasks_extension import EXTENSION_ID, TasksExtension, error_object

CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
"""The request ``_meta`` key under which a client declares its capabilities."""

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})


class RpcError(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def wants_tasks(params: dict[str, Any]) -> bool:
    """Whether the client declared the tasks extension on this request."""
    meta = params.get("_meta")
    capabilities = meta.get(CLIENT_CAPABILITIES) if isinstance(meta, dict) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    return isinstance(extensions, dict) and EXTENSION_ID in extensions


class ExtensionServer:
    """The JSON-RPC methods of the server, over one task store and owner."""

    def __init__(self, store: ts.GenericTaskStore, owner: str, name: str) -> None:
        """Serve the tasks of ``owner`` in ``store``."""
        self.store = store
        self.tasks = TasksExtension(store, owner)
        self.name = name

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of one request, or RpcError / a library error."""
        if method == "initialize":
            return {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}, "extensions": {EXTENSION_ID: {}}},
                "serverInfo": {"name": self.name, "version": "1.0"},
            }
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": TOOLS}
        if method == "tools/call":
            return await self.call_tool(params)
        if method in TASK_METHODS:
            return await self.tasks.handle(method, params)
        raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")

    async def call_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        """Queue the call; the task (extension declared) or, once done, the result."""
        tool = params.get("name")
        if tool not in TOOL_NAMES:
            raise RpcError(INVALID_PARAMS, f"unknown tool: {tool!r}")
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "arguments must be an object")
        job = {"tool": tool, "arguments": arguments}
        record, created = await self.tasks.submit(job, queue=QUEUE)
        if wants_tasks(params):
            return created
        # A client without the extension waits for the tool's result in this request.
        task_id = record.task.task_id
        result = await self.store.wait_for_result(task_id, record.owner_id)
        if not isinstance(result, dict):
            raise RpcError(-32603, "the tool call ended without a result")
        return result


def build_app(store: ts.GenericTaskStore, owner: str, name: str) -> Starlette:
    """The ASGI app: JSON-RPC at ``POST /mcp``."""
    server = ExtensionServer(store, owner, name)

    async def endpoint(request: Request) -> Response:
        try:
            message = json.loads(await request.body())
        except ValueError:
            return JSONResponse(_error(None, PARSE_ERROR, "not JSON"))
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return JSONResponse(_error(None, INVALID_REQUEST, "not a JSON-RPC request"))
        if "id" not in message:  # a notification: nothing to answer
            return Response(status_code=202)
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return JSONResponse(_error(message["id"], INVALID_PARAMS, "params must be an object"))
        try:
            result = await server.call(message["method"], params)
        except RpcError as error:
            return JSONResponse(_error(message["id"], error.code, str(error)))
        except ts.TaskStoreError as error:
            return JSONResponse(
                {"jsonrpc": "2.0", "id": message["id"], "error": error_object(error)}
            )
        return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.aclose()

    return Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def main() -> None:
    """Serve on 127.0.0.1 at the port given."""
    args = arguments(__doc__.splitlines()[0], server=True).parse_args()
    store = ts.GenericTaskStore.from_url(args.redis_url, prefix=args.prefix)
    app = build_app(store, args.owner, name=f"server-{args.port}")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
