"""An MCP server (MCP Python SDK 1.x, streamable HTTP) whose tasks live in Redis.

It needs the ``mcp1`` extra (``pip install 'taskstore-redis[mcp1]'``: the SDK 1.x and
``taskstore_redis.mcp1``). Run two of them on one Redis and a client can start a task on
one and follow it, and fetch its result, on the other:

    export MCP_EXAMPLE_TOKENS_FILE=tokens.json  # {"<token>": "<owner id>", ...}
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

Safe to copy as a starting point:

- Every request carries ``Authorization: Bearer <token>`` (the SDK's bearer
  middleware, over ``mcp_tasks_worker.TokenMap``: HTTP 401 with
  ``WWW-Authenticate`` otherwise). The token's owner owns the tasks the request
  creates and is checked on every task request: another owner's task is answered
  exactly as a missing one, and each owner has its own quota (100 in progress).
- A body above 64 KiB is HTTP 413, whatever the SDK's own limit; one nested
  deeper than 32 levels is a JSON-RPC parse error (the SDK would answer HTTP 500).
- Tool arguments are bounded by their ``inputSchema`` (a tool error otherwise,
  as the SDK reports input errors).
- ``tasks/result`` waits ``--wait-s`` seconds at most (60), then answers a
  JSON-RPC error (call it again); the wait's subscription is released.
"""

from __future__ import annotations

import contextlib
import math
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn
from jsonschema import Draft202012Validator
from mcp.server import Server
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import (
    AuthenticatedUser,
    BearerAuthBackend,
    RequireAuthMiddleware,
)
from mcp.server.auth.provider import AccessToken
from mcp.server.experimental.task_context import ServerTaskContext
from mcp.server.lowlevel.server import request_ctx
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import McpError
from mcp.types import (
    INTERNAL_ERROR,
    PARSE_ERROR,
    TASK_REQUIRED,
    CallToolResult,
    CreateTaskResult,
    ErrorData,
    GetTaskPayloadRequest,
    SamplingMessage,
    ServerResult,
    TaskMetadata,
    TextContent,
    Tool,
    ToolExecution,
)
from mcp_tasks_worker import ECHO_ARGUMENTS, MAX_TEXT, QUEUE, TokenMap, arguments, token_map
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp1 import RedisTaskMessageQueue, RedisTaskStore

MAX_BODY_BYTES = 64 * 1024
"""The largest request body taken (HTTP 413 above it)."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects a request may have."""
WAIT_S = 60.0
"""How long a ``tasks/result`` waits for the task to end, by default."""
MAX_SECONDS = 60
"""The longest ``seconds`` of ``slow_echo``."""

# The newest 1.x SDKs mark the experimental tasks API deprecated; it is still the 1.x API.
warnings.filterwarnings("ignore", "The experimental tasks API is deprecated", DeprecationWarning)


def _tool(
    name: str, description: str, properties: dict[str, Any], required: tuple[str, ...] = ()
) -> Tool:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return Tool(
        name=name,
        description=description,
        inputSchema={**schema, "required": list(required)} if required else schema,
        execution=ToolExecution(taskSupport=TASK_REQUIRED),
    )


TEXT = {"type": "string", "maxLength": MAX_TEXT}
TOOLS = [
    _tool(
        "slow_echo",
        "Echo a text after working for some seconds, as a task.",
        {"text": TEXT, "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}},
        ("text",),
    ),
    _tool("greet", "Ask who is there, then greet them.", {}),
    _tool("haiku", "Have the client's model write a haiku.", {"topic": TEXT}),
    Tool(
        name="queued_echo",
        description="Echo a text after working some steps, run by a worker process from the queue.",
        inputSchema=ECHO_ARGUMENTS,
        execution=ToolExecution(taskSupport=TASK_REQUIRED),
    ),
]
"""The tools; the SDK checks every call's arguments against its ``inputSchema``."""

_CHECKERS = {tool.name: Draft202012Validator(tool.inputSchema) for tool in TOOLS}


def check_arguments(tool: str, arguments: dict[str, Any]) -> None:
    """ValueError (a tool error) unless ``arguments`` fit the tool's ``inputSchema``.

    The SDK checks them too, but only against a schema it has cached (some 1.x
    versions cache it only once the client listed the tools).
    """
    checker = _CHECKERS.get(tool)
    if checker is None:
        raise ValueError("unknown tool")
    if not checker.is_valid(arguments) or any(
        isinstance(value, float) and not math.isfinite(value) for value in arguments.values()
    ):
        raise ValueError(f"invalid arguments for {tool}: see its inputSchema")


def current_owner() -> str:
    """The owner of the request being served: the one its bearer token stands for.

    The tasks a tool call starts run in asyncio tasks that inherit the request's
    context, so their writes are the owner's too.
    """
    request = request_ctx.get().request  # LookupError outside of a request
    user = None if request is None else request.scope.get("user")
    if not isinstance(user, AuthenticatedUser):
        raise PermissionError("no authenticated owner for this request")
    return user.access_token.client_id


class TokenVerifier:
    """The SDK's ``TokenVerifier`` over a static :class:`TokenMap`: the owner is the client id."""

    def __init__(self, tokens: TokenMap) -> None:
        """Accept the tokens of ``tokens``."""
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access, or None for a token the map does not know."""
        owner = self.tokens.owner(f"Bearer {token}")
        return None if owner is None else AccessToken(token=token, client_id=owner, scopes=[])


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit``."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


class BodyLimit:
    """ASGI middleware: HTTP 413 for a body above ``limit`` bytes, read before the app runs.

    A body nested deeper than :data:`MAX_DEPTH` gets a JSON-RPC parse error (HTTP
    400, as the SDK answers other parse errors): the SDK's own parsing answers
    HTTP 500 to it.
    """

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        """Guard ``app``."""
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole body (up to the limit), then hand it to the app."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > self.limit
        body, more = bytearray(), not too_large
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            too_large = len(body) > self.limit
            more = more and not too_large
        if too_large:
            refusal = JSONResponse({"error": f"body above {self.limit} bytes"}, status_code=413)
            await refusal(scope, receive, send)
            return
        if _nested_deeper_than(body, MAX_DEPTH):
            error = {"code": PARSE_ERROR, "message": f"JSON nested deeper than {MAX_DEPTH} levels"}
            refusal = JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=400)
            await refusal(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


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
    store: RedisTaskStore, queue: RedisTaskMessageQueue, name: str, wait_s: float = WAIT_S
) -> Server[Any, Any]:
    """A low-level MCP server with task tools, its tasks and their messages in Redis."""
    server: Server[Any, Any] = Server(name)
    support = server.experimental.enable_tasks(store=store, queue=queue)
    queue.use_handler(support.handler)  # forgets the requests answered through other servers
    get_result = server.request_handlers[GetTaskPayloadRequest]

    async def bounded_get_result(request: GetTaskPayloadRequest) -> ServerResult:
        # Leaving the wait (cancelled) releases its subscription.
        with anyio.move_on_after(wait_s):
            return await get_result(request)
        message = f"the task did not end within {wait_s:g} s; call tasks/result again"
        raise McpError(ErrorData(code=INTERNAL_ERROR, message=message))

    server.request_handlers[GetTaskPayloadRequest] = bounded_get_result

    @server.list_tools()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_tools() -> list[Tool]:
        return TOOLS

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(tool: str, arguments: dict[str, Any]) -> CallToolResult | CreateTaskResult:
        context = server.request_context
        context.experimental.validate_task_mode(TASK_REQUIRED)
        check_arguments(tool, arguments)
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


def build_app(
    store: RedisTaskStore, tokens: TokenMap, name: str, wait_s: float = WAIT_S
) -> Starlette:
    """The ASGI app serving the MCP endpoint at ``/mcp`` to the holders of ``tokens``.

    ``store``'s owner should be :func:`current_owner`.
    """
    queue = RedisTaskMessageQueue(store)
    manager = StreamableHTTPSessionManager(app=build_server(store, queue, name, wait_s))

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield
        await queue.aclose()
        await store.aclose()

    return Starlette(
        routes=[Mount("/mcp", app=RequireAuthMiddleware(BodyLimit(handle), required_scopes=[]))],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(TokenVerifier(tokens))),
            Middleware(AuthContextMiddleware),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    """Serve on 127.0.0.1 at the port given."""
    parser = arguments(__doc__.splitlines()[0], server=True)
    parser.add_argument(
        "--wait-s", type=float, default=WAIT_S, help="how long a tasks/result waits at most"
    )
    args = parser.parse_args()
    if not 0 < args.wait_s <= 3600:
        parser.error("--wait-s must be above 0 and at most 3600")
    tokens = token_map(args.tokens)
    store = RedisTaskStore(
        ts.GenericTaskStore.from_url(args.redis_url, prefix=args.prefix), current_owner
    )
    app = build_app(store, tokens, name=f"server-{args.port}", wait_s=args.wait_s)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
