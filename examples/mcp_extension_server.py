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

    export MCP_EXAMPLE_TOKENS_FILE=tokens.json  # {"<token>": "<owner id>", ...}
    python examples/mcp_extension_server.py --port 8001 --redis-url redis://localhost:6379
    python examples/mcp_tasks_worker.py --redis-url redis://localhost:6379

Make a token with ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``.

Safe to copy as a starting point:

- Every request carries ``Authorization: Bearer <token>``; the token map
  (``--tokens``, see ``mcp_tasks_worker.TokenMap``) says which owner it stands
  for. A missing or unknown token is HTTP 401 with ``WWW-Authenticate: Bearer``,
  before the body is read. Each owner sees its own tasks only (another owner's
  task is answered exactly as a missing one, -32602) and has its own quota of
  tasks in progress (the store's ``max_tasks_per_owner``, 100).
- A body above 64 KiB is HTTP 413 (``Content-Length`` checked first, then the
  bytes as they come). JSON nested deeper than 32 levels, ``NaN`` and
  ``Infinity``, and malformed requests or params are JSON-RPC errors; anything
  unexpected is a JSON-RPC internal error (-32603), never an HTTP 500.
- Tool arguments are checked against the tool's ``inputSchema`` (bounded:
  invalid params, -32602, otherwise).
- A ``tools/call`` without the extension waits ``--wait-s`` seconds at most
  (30) for its result. If the wait times out, or the client goes away
  first, the task is cancelled and the wait's subscription is released.

Unknown, foreign or expired tasks are JSON-RPC errors with code -32602.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from mcp_tasks_worker import QUEUE, TOOLS, BadArguments, TokenMap, arguments, check_arguments
from mcp_tasks_worker import token_map as read_token_map
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp.protocol import EXTENSION_ID, TasksProtocol, error_object

logger = logging.getLogger("mcp_extension_server")

CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
"""The request ``_meta`` key under which a client declares its capabilities."""

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
INTERNAL_ERROR = -32603
TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})

MAX_BODY_BYTES = 64 * 1024
"""The largest request body taken (HTTP 413 above it)."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects a request may have."""
WAIT_S = 30.0
"""How long a ``tools/call`` without the extension waits for its result, by default."""
MAX_CONNECTIONS = 200
"""Connections served at once (uvicorn answers 503 beyond): blocking waits are bounded too."""


class RpcError(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class TooLarge(Exception):
    """The request body is above the limit."""


def wants_tasks(params: dict[str, Any]) -> bool:
    """Whether the client declared the tasks extension on this request."""
    meta = params.get("_meta")
    capabilities = meta.get(CLIENT_CAPABILITIES) if isinstance(meta, dict) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    return isinstance(extensions, dict) and EXTENSION_ID in extensions


class ExtensionServer:
    """The JSON-RPC methods of the server, over one task store; each request has its owner."""

    def __init__(self, store: ts.GenericTaskStore, name: str, wait_s: float = WAIT_S) -> None:
        """Serve the tasks in ``store``; wait ``wait_s`` at most for a tool's result."""
        self.store = store
        self.name = name
        self.wait_s = wait_s

    async def call(
        self, owner: str, method: str, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        """The result of one request of ``owner``, or RpcError / a library error."""
        if method == "initialize":
            version = params.get("protocolVersion")
            return {
                "protocolVersion": version if isinstance(version, str) else "2025-11-25",
                "capabilities": {"tools": {}, "extensions": {EXTENSION_ID: {}}},
                "serverInfo": {"name": self.name, "version": "1.0"},
            }
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": TOOLS}
        if method == "tools/call":
            return await self.call_tool(TasksProtocol(self.store, owner), params, request)
        if method in TASK_METHODS:
            # The owner is checked on every task request: another owner's task is "not found".
            return await TasksProtocol(self.store, owner).handle(method, params)
        raise RpcError(METHOD_NOT_FOUND, "method not found")

    async def call_tool(
        self, tasks: TasksProtocol, params: dict[str, Any], request: Request
    ) -> dict[str, Any]:
        """Queue the call; the task (extension declared) or, once done, the result."""
        tool = params.get("name")
        try:
            checked = check_arguments(tool, params.get("arguments"))
        except BadArguments as error:
            raise RpcError(INVALID_PARAMS, str(error)) from None
        record, created = await tasks.submit({"tool": tool, "arguments": checked}, queue=QUEUE)
        if wants_tasks(params):
            return created
        # A client without the extension waits for the tool's result in this request,
        # for wait_s at most, and no longer than it stays connected.
        task_id, owner = record.task.task_id, record.owner_id
        waiting = asyncio.ensure_future(
            self.store.wait_for_result(task_id, owner_id=owner, timeout=self.wait_s)
        )
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (waiting, gone):
                future.cancel()  # leaving the wait releases its subscription
            await asyncio.gather(waiting, gone, return_exceptions=True)
        if waiting.cancelled() or isinstance(waiting.exception(), ts.WaitTimeout):
            # Nobody will read this result: stop the work, free the owner's quota.
            await tasks.handle("tasks/cancel", {"taskId": task_id})
            if waiting.cancelled():
                raise RpcError(INTERNAL_ERROR, "the client went away")
            raise RpcError(
                INTERNAL_ERROR,
                f"the tool call did not end within {self.wait_s:g} s and was cancelled;"
                " declare the tasks extension to follow long calls as tasks",
            )
        result = waiting.result()
        if not isinstance(result, dict):
            raise RpcError(INTERNAL_ERROR, "the tool call ended without a result")
        return result


async def _disconnected(request: Request) -> None:
    """Return once the client closed the connection (the body was read before)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body; TooLarge above ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(body: bytes) -> Any:
    """The JSON of a body: RpcError if it is not JSON or nests too deep."""
    try:
        message = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise RpcError(PARSE_ERROR, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError too
        raise RpcError(PARSE_ERROR, "not JSON") from None
    if _depth_above(message, MAX_DEPTH):
        raise RpcError(INVALID_REQUEST, f"JSON nested deeper than {MAX_DEPTH} levels")
    return message


def _depth_above(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item)
    return False


def build_app(
    store: ts.GenericTaskStore, tokens: TokenMap, name: str, wait_s: float = WAIT_S
) -> Starlette:
    """The ASGI app: JSON-RPC at ``POST /mcp``, for the holders of ``tokens``."""
    server = ExtensionServer(store, name, wait_s)

    async def endpoint(request: Request) -> Response:
        owner = tokens.owner(request.headers.get("authorization"))
        if owner is None:
            return _unauthorized(request)
        try:
            message = parse(await read_body(request))
        except TooLarge:
            return JSONResponse({"error": f"body above {MAX_BODY_BYTES} bytes"}, status_code=413)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody to answer
        except RpcError as error:
            return JSONResponse(_error(None, error.code, str(error)))
        request_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(request_id, str | int | None) or isinstance(request_id, bool):
            request_id = None
        if (
            not isinstance(message, dict)
            or message.get("jsonrpc") != "2.0"
            or not isinstance(message.get("method"), str)
        ):
            return JSONResponse(_error(request_id, INVALID_REQUEST, "not a JSON-RPC request"))
        if "id" not in message:  # a notification: nothing to answer
            return Response(status_code=202)
        if request_id is None:
            return JSONResponse(_error(None, INVALID_REQUEST, "id must be a string or a number"))
        params = message.get("params", {})
        if not isinstance(params, dict):
            return JSONResponse(_error(request_id, INVALID_PARAMS, "params must be an object"))
        try:
            result = await server.call(owner, message["method"], params, request)
        except RpcError as error:
            return JSONResponse(_error(request_id, error.code, str(error)))
        except ts.TaskStoreError as error:
            return JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error_object(error)})
        except Exception:
            logger.exception("%s failed", message["method"])
            return JSONResponse(_error(request_id, INTERNAL_ERROR, "internal error"))
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": result})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.aclose()

    return Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)


def _unauthorized(request: Request) -> Response:
    """HTTP 401: no token, or not one of the map (RFC 6750)."""
    challenge = 'Bearer realm="mcp"'
    if request.headers.get("authorization") is not None:
        challenge += ', error="invalid_token"'
    return JSONResponse(
        {"error": "invalid_token", "error_description": "a valid bearer token is required"},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def main() -> None:
    """Serve on 127.0.0.1 at the port given."""
    parser = arguments(__doc__.splitlines()[0], server=True)
    parser.add_argument(
        "--wait-s",
        type=float,
        default=WAIT_S,
        help="how long a tools/call without the extension waits for its result",
    )
    args = parser.parse_args()
    if not 0 < args.wait_s <= 3600:
        parser.error("--wait-s must be above 0 and at most 3600")
    tokens = read_token_map(args.tokens)
    store = ts.GenericTaskStore.from_url(args.redis_url, prefix=args.prefix)
    app = build_app(store, tokens, name=f"server-{args.port}", wait_s=args.wait_s)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        limit_concurrency=MAX_CONNECTIONS,
    )


if __name__ == "__main__":
    main()
