"""The SEP-2663 tasks runtime for MCP SDK 2.x servers: :class:`TasksExtension`.

``MCPServer(extensions=[tasks])`` serves ``tasks/get``, ``tasks/update`` and
``tasks/cancel``; a ``tools/call`` of a task tool from a client that declared the
extension is submitted to the store's work queue and answered at once with a
``CreateTaskResult``. Workers in any process sharing the store run the calls
(:meth:`TasksExtension.run_workers`, or ``run_worker`` with
:meth:`TasksExtension.handler`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, overload

import anyio
import mcp_types
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding, ToolBinding
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, CallToolResult, RequestParams, TextContent
from pydantic import Field, ValidationError

from .._async._lease import Lease
from .._async._store import GenericTaskStore
from .._async._worker import run_worker
from .._core.errors import LeaseLost, StoreUnavailable, TaskStoreError
from .._core.model import JSONValue, TaskRecord
from .._worker_loop import WorkerStats
from ._context import TaskContext
from ._seal import Sealer
from .protocol import EXTENSION_ID, JSONObject, TasksProtocol, detailed_task

logger = logging.getLogger("taskstore_redis.mcp")

TaskSupport = Literal["required", "optional"]
"""How a tool runs as a task, as SEP-2663 and FastMCP's ``TaskConfig`` mean it.

``required``: only as a task; a client without the tasks extension gets -32021.
``optional``: as a task for a client that declared the extension, else inline.
"""

OwnerOf = Callable[[ServerRequestContext[Any, Any]], str]
"""The owner id of the request being served."""

CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
MAX_LISTEN_TASKS = 100
"""The most task ids one ``subscriptions/listen`` may follow."""

F = TypeVar("F", bound=Callable[..., Any])


def principal_owner(ctx: ServerRequestContext[Any, Any]) -> str:
    """The owner of a request: its authenticated principal (the SDK's auth context).

    ``issuer|subject`` when the token names its resource owner, else the token's
    ``client_id``. A request without an authenticated principal is refused
    (-32600): pass ``owner=`` to :class:`TasksExtension` to serve such requests.
    """
    token = get_access_token()
    if token is None:
        raise MCPError(
            code=mcp_types.INVALID_REQUEST,
            message="tasks need an authenticated caller; this request has no access token",
        )
    if token.subject:
        issuer = (token.claims or {}).get("iss")
        return f"{issuer or ''}|{token.subject}"
    return token.client_id


def declared_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client declared the tasks extension for this request.

    Read from the request's ``_meta`` (SEP-2133's per-request client capabilities)
    and from the connection's declared capabilities.
    """
    meta: Mapping[str, Any] | None = ctx.meta if isinstance(ctx.meta, Mapping) else None
    if meta is None and isinstance(ctx.params, Mapping):
        raw = ctx.params.get("_meta")
        meta = raw if isinstance(raw, Mapping) else None
    if meta is not None:
        capabilities = meta.get(CLIENT_CAPABILITIES_META)
        if isinstance(capabilities, Mapping):
            extensions = capabilities.get("extensions")
            if isinstance(extensions, Mapping) and isinstance(
                extensions.get(EXTENSION_ID), Mapping
            ):
                return True
    declared = ctx.session.client_capabilities
    return bool(declared and declared.extensions and EXTENSION_ID in declared.extensions)


def missing_capability() -> MCPError:
    """The -32021 error SEP-2663 answers a client that did not declare the extension."""
    return MCPError(
        code=mcp_types.MISSING_REQUIRED_CLIENT_CAPABILITY,
        message="Missing required client capability",
        data={"requiredCapabilities": {"extensions": {EXTENSION_ID: {}}}},
    )


def _as_mcp_error(error: TaskStoreError) -> MCPError:
    return MCPError(code=error.code, message=str(error))


def error_result(text: str) -> JSONObject:
    """A tool's own error: a ``CallToolResult`` with ``isError`` (the task completes)."""
    return {"content": [{"type": "text", "text": text}], "isError": True}


class TaskIdParams(RequestParams):
    """The params of ``tasks/get`` and ``tasks/cancel``."""

    task_id: str = Field(alias="taskId", min_length=1, max_length=512)


class UpdateParams(TaskIdParams):
    """The params of ``tasks/update``."""

    input_responses: dict[str, Any] = Field(alias="inputResponses")


@dataclass(frozen=True)
class TaskTool:
    """A task tool: its function, how it runs as a task, and its SDK description."""

    name: str
    fn: Callable[..., Any]
    task: TaskSupport
    context_param: str | None
    tool: Tool
    """The SDK's view of the tool (schema, argument validation, result conversion)."""

    async def call(self, arguments: Mapping[str, Any], context: TaskContext) -> CallToolResult:
        """Validate ``arguments``, run the function, convert what it returns."""
        metadata = self.tool.fn_metadata
        kwargs = metadata.validate_arguments(dict(arguments))
        if self.context_param is not None:
            kwargs[self.context_param] = context
        if inspect.iscoroutinefunction(self.fn):
            value = await self.fn(**kwargs)
        else:
            value = await anyio.to_thread.run_sync(functools.partial(self.fn, **kwargs))
        converted = metadata.convert_result(value)
        if not isinstance(converted, CallToolResult):
            raise ToolError(f"tool {self.name!r} returned a result a task cannot hold")
        return converted


def _context_param(fn: Callable[..., Any]) -> str | None:
    hints = typing.get_type_hints(fn)
    found = [name for name, hint in hints.items() if hint is TaskContext]
    if len(found) > 1:
        raise TypeError(f"{fn.__name__}: more than one TaskContext parameter: {found}")
    return found[0] if found else None


def _without_context(fn: Callable[..., Any], context_param: str | None) -> Callable[..., Any]:
    """``fn`` as the SDK should see it: the TaskContext parameter left out."""
    if context_param is None:
        return fn
    hints = typing.get_type_hints(fn)
    signature = inspect.signature(fn)
    parameters = [
        parameter.replace(annotation=hints.get(name, parameter.annotation))
        for name, parameter in signature.parameters.items()
        if name != context_param
    ]
    returns = hints.get("return", signature.return_annotation)

    if inspect.iscoroutinefunction(fn):

        async def call(**kwargs: Any) -> Any:
            return await fn(**kwargs, **{context_param: TaskContext(None, None)})

    else:

        def call(**kwargs: Any) -> Any:  # type: ignore[misc]
            return fn(**kwargs, **{context_param: TaskContext(None, None)})

    functools.update_wrapper(call, fn)
    del call.__wrapped__  # type: ignore[attr-defined]  # the SDK reads the signature below
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=returns
    )
    call.__annotations__ = {
        name: hints[name] for name in [*(p.name for p in parameters), "return"] if name in hints
    }
    return call


class TaskTools:
    """A set of task tools, declared once and shared by the servers and the workers.

    Declare them at import time (``@tools.tool(...)``), then give the set to the
    :class:`TasksExtension` of each process: a server lists and submits them, a
    worker runs them, looked up by name.
    """

    def __init__(self) -> None:
        """An empty set."""
        self._tools: dict[str, TaskTool] = {}

    def __iter__(self) -> Iterator[TaskTool]:
        """The tools, in the order they were declared."""
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        """How many tools there are."""
        return len(self._tools)

    def get(self, name: str) -> TaskTool | None:
        """The tool named ``name``, if there is one."""
        return self._tools.get(name)

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        task: TaskSupport = "required",
        title: str | None = None,
        description: str | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        task: TaskSupport = "required",
        title: str | None = None,
        description: str | None = None,
    ) -> F | Callable[[F], F]:
        """Declare a task tool (a decorator, with or without arguments).

        The function, sync or async, may take a :class:`TaskContext` parameter (any
        name); the server lists the tool with its other parameters as the input
        schema. ``task`` says how it runs (:data:`TaskSupport`).

        Raises:
            ValueError: ``task`` is neither ``required`` nor ``optional``, or a tool
                of that name was declared already.

        """
        if task not in ("required", "optional"):
            raise ValueError(f"task must be 'required' or 'optional', not {task!r}")

        def register(function: F) -> F:
            context_param = _context_param(function)
            tool_name = name or function.__name__
            if tool_name in self._tools:
                raise ValueError(f"task tool {tool_name!r} is already declared")
            sdk_tool = Tool.from_function(
                _without_context(function, context_param),
                name=tool_name,
                title=title,
                description=description,
            )
            self._tools[tool_name] = TaskTool(tool_name, function, task, context_param, sdk_tool)
            return function

        return register if fn is None else register(fn)

    def worker_handler(self, store: GenericTaskStore) -> Callable[[Lease], Awaitable[JSONValue]]:
        """The ``run_worker`` handler running these tools' calls from ``store``.

        What ``taskstore-redis worker MODULE:TOOLS --queue QUEUE`` runs: the command
        opens the store, then asks for this handler. The encryption key, if any,
        comes from ``TASKSTORE_REDIS_MCP_KEY``.
        """
        return TasksExtension(store, tools=self).handler()


class TasksExtension(Extension):
    """The MCP tasks extension (SEP-2663) for SDK 2.x servers, on the task store.

    Usage::

        tasks = TasksExtension(store, owner=principal_owner)

        @tasks.tool(task="required")
        async def slow_square(n: int, ctx: TaskContext) -> int: ...

        server = MCPServer("app", extensions=[tasks], middleware=[tasks.listen])

    and in any number of worker processes (the same tool definitions imported)::

        await tasks.run_workers(concurrency=16)

    ``owner`` derives the owner id of every request (default: the authenticated
    principal, :func:`principal_owner`); a task of another owner is answered as
    unknown. ``queue`` is the work queue the calls go to; ``ttl_ms`` the tasks'
    TTL (default: the store's); ``max_attempts`` how often a call is tried when
    its worker dies. ``headers`` names the HTTP headers of a call that travel with
    its task to the worker (:attr:`TaskContext.headers`). ``key`` (or the
    ``TASKSTORE_REDIS_MCP_KEY`` environment variable) turns on encryption at rest
    of the calls' arguments, their request context and their results.
    """

    identifier = EXTENSION_ID

    def __init__(
        self,
        store: GenericTaskStore,
        *,
        owner: OwnerOf = principal_owner,
        queue: str = "mcp-tools",
        ttl_ms: int | None = None,
        max_attempts: int | None = None,
        headers: Sequence[str] = (),
        key: str | bytes | None = None,
        tools: TaskTools | None = None,
    ) -> None:
        """Serve the task tools ``tools`` (default: a new, empty set) on ``store``."""
        self._store = store
        self._owner = owner
        self._queue = queue
        self._ttl_ms = ttl_ms
        self._max_attempts = max_attempts
        self._headers = tuple(name.lower() for name in headers)
        self._sealer = Sealer.from_key(key)
        self._tools = TaskTools() if tools is None else tools

    @property
    def store(self) -> GenericTaskStore:
        """The task store underneath."""
        return self._store

    @property
    def queue(self) -> str:
        """The work queue the task tools' calls go to."""
        return self._queue

    # --- declaring tools --------------------------------------------------------------------

    def tool(
        self,
        *,
        name: str | None = None,
        task: TaskSupport = "required",
        title: str | None = None,
        description: str | None = None,
    ) -> Callable[[F], F]:
        """Declare a task tool in this extension's :class:`TaskTools` (:meth:`TaskTools.tool`)."""
        return self._tools.tool(name=name, task=task, title=title, description=description)

    @property
    def task_tools(self) -> TaskTools:
        """The task tools this extension serves."""
        return self._tools

    # --- the SDK's extension seams ----------------------------------------------------------

    def tools(self) -> Sequence[ToolBinding]:
        """The task tools, as the server lists them (``execution.taskSupport`` in ``_meta``)."""
        return [
            ToolBinding(
                fn=tool.tool.fn,
                meta={EXTENSION_ID: {"taskSupport": tool.task}},
                kwargs={
                    "name": tool.name,
                    "title": tool.tool.title,
                    "description": tool.tool.description,
                },
            )
            for tool in self._tools
        ]

    def methods(self) -> Sequence[MethodBinding]:
        """``tasks/get``, ``tasks/update`` and ``tasks/cancel``."""
        return [
            MethodBinding("tasks/get", TaskIdParams, self._get),
            MethodBinding("tasks/update", UpdateParams, self._update),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel),
        ]

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        """Run a task tool's call as a task, or inline (``optional``, no capability)."""
        tool = self._tools.get(params.name)
        if tool is None:
            return await call_next(ctx)
        if not declared_tasks(ctx):
            if tool.task == "required":
                raise missing_capability()
            return await call_next(ctx)
        arguments = params.arguments or {}
        try:
            tool.tool.fn_metadata.validate_arguments(dict(arguments))
        except ValidationError as error:
            fields = sorted({".".join(str(part) for part in e["loc"]) for e in error.errors()})
            text = f"invalid arguments for {tool.name}: {', '.join(fields)}"
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        protocol = self._protocol(ctx)
        job: JSONObject = {
            "tool": tool.name,
            "arguments": arguments,
            "request": self._request_context(ctx, protocol.owner_id()),
        }
        try:
            _, created = await protocol.submit(
                self._sealer.seal(job),
                queue=self._queue,
                ttl_ms=self._ttl_ms,
                max_attempts=self._max_attempts,
            )
        except TaskStoreError as error:
            raise _as_mcp_error(error) from error
        return created

    # --- the client's requests --------------------------------------------------------------

    def _protocol(self, ctx: ServerRequestContext[Any, Any]) -> TasksProtocol:
        return TasksProtocol(self._store, self._owner(ctx))

    async def _serve(
        self,
        ctx: ServerRequestContext[Any, Any],
        method: str,
        params: Mapping[str, Any],
    ) -> JSONObject:
        if not declared_tasks(ctx):
            raise missing_capability()
        protocol = self._protocol(ctx)
        try:
            answer = await protocol.handle(method, params)
        except TaskStoreError as error:
            raise _as_mcp_error(error) from error
        if method == "tasks/get":
            answer = self._open_result(answer)
        return answer

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> JSONObject:
        return await self._serve(ctx, "tasks/get", {"taskId": params.task_id})

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateParams
    ) -> JSONObject:
        return await self._serve(
            ctx,
            "tasks/update",
            {"taskId": params.task_id, "inputResponses": params.input_responses},
        )

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams
    ) -> JSONObject:
        return await self._serve(ctx, "tasks/cancel", {"taskId": params.task_id})

    def _open_result(self, detailed: JSONObject) -> JSONObject:
        if "result" in detailed:
            return {**detailed, "result": self._sealer.open(detailed["result"])}
        return detailed

    def _request_context(self, ctx: ServerRequestContext[Any, Any], owner_id: str) -> JSONObject:
        token = get_access_token()
        principal: JSONObject = {"owner": owner_id}
        if token is not None:
            principal["clientId"] = token.client_id
            principal["subject"] = token.subject
            principal["scopes"] = list(token.scopes)
        headers: dict[str, JSONValue] = {}
        request_headers = getattr(ctx.request, "headers", None)
        if self._headers and request_headers is not None:
            for name in self._headers:
                value = request_headers.get(name)
                if isinstance(value, str):
                    headers[name] = value
        return {"principal": principal, "headers": headers}

    # --- notifications/tasks ----------------------------------------------------------------

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Server middleware: ``notifications/tasks`` on ``subscriptions/listen`` with ``taskIds``.

        Pass it as ``MCPServer(middleware=[tasks.listen])``. A listen request whose
        ``notifications`` name ``taskIds`` is served by the SDK's own listen
        handler for the other kinds, and this middleware adds the tasks: the
        acknowledgement lists the task ids it follows (the caller's own, at most
        100), and each change of one of them, in any process, sends a
        ``notifications/tasks`` frame with the task's ``DetailedTask`` (the first
        right after the acknowledgement). A client that did not declare the
        extension gets -32021.
        """
        if ctx.method != "subscriptions/listen" or ctx.request_id is None:
            return await call_next(ctx)
        notifications = (ctx.params or {}).get("notifications")
        if not isinstance(notifications, Mapping) or "taskIds" not in notifications:
            return await call_next(ctx)
        requested = notifications.get("taskIds")
        if (
            not isinstance(requested, list)
            or not all(isinstance(task_id, str) for task_id in requested)
            or len(requested) > MAX_LISTEN_TASKS
        ):
            raise MCPError(
                code=mcp_types.INVALID_PARAMS,
                message=f"notifications.taskIds must be a list of at most {MAX_LISTEN_TASKS} ids",
            )
        if not declared_tasks(ctx):
            raise missing_capability()
        owner_id = self._owner(ctx)
        followed: dict[str, TaskRecord] = {}
        for task_id in dict.fromkeys(requested):
            with contextlib.suppress(TaskStoreError):
                record = await self._store.get(task_id, owner_id=owner_id)
                if not record.is_expired():
                    followed[task_id] = record
        others = {name: value for name, value in notifications.items() if name != "taskIds"}
        rest = replace(ctx, params={**(ctx.params or {}), "notifications": others})
        subscription_id = ctx.request_id
        acknowledged = anyio.Event()
        session = _AcknowledgeTasks(ctx.session, list(followed), acknowledged)
        result: HandlerResult = None
        async with anyio.create_task_group() as group:
            for record in followed.values():
                group.start_soon(self._follow, ctx.session, record, subscription_id, acknowledged)
            result = await call_next(replace(rest, session=session))  # type: ignore[arg-type]
            group.cancel_scope.cancel()
        return result

    async def _follow(
        self,
        session: Any,
        record: TaskRecord,
        subscription_id: Any,
        acknowledged: anyio.Event,
    ) -> None:
        """Send ``record``, then each later version of its task, until it ends."""
        await acknowledged.wait()
        task_id, owner_id = record.task.task_id, record.owner_id
        while True:
            params = self._open_result(detailed_task(record))
            params.pop("resultType", None)
            params["_meta"] = {"io.modelcontextprotocol/subscriptionId": subscription_id}
            await session.send_notification(
                _TaskNotification(method="notifications/tasks", params=params),
                related_request_id=subscription_id,
            )
            if record.task.status.is_terminal:
                return
            changed = None
            while changed is None:
                try:
                    changed = await self._store.wait(
                        task_id, owner_id=owner_id, after_version=record.version
                    )
                except StoreUnavailable:
                    await anyio.sleep(0.5)  # set up again once the server is back
                except TaskStoreError:
                    return  # purged or expired: nothing more to say
            record = changed

    # --- the workers ------------------------------------------------------------------------

    def handler(self) -> Callable[[Lease], Awaitable[JSONValue]]:
        """The ``run_worker`` handler that runs the task tools' calls."""
        return self._run

    async def run_workers(self, *, concurrency: int = 16, **options: Any) -> WorkerStats:
        """Run the task tools' calls from the queue until stopped (``run_worker``'s options)."""
        return await run_worker(
            self._store, self._run, queue=self._queue, concurrency=concurrency, **options
        )

    async def _run(self, lease: Lease) -> JSONValue:
        job = self._sealer.open(lease.params)
        if not isinstance(job, dict) or not isinstance(job.get("tool"), str):
            sealed: JSONValue = self._sealer.seal(error_result("this task holds no tool call"))
            return sealed
        name = job["tool"]
        tool = self._tools.get(name)
        if tool is None:
            unknown = error_result(f"unknown task tool {name!r} on this worker")
            sealed = self._sealer.seal(unknown)
            return sealed
        arguments = job.get("arguments")
        request = job.get("request")
        context = TaskContext(
            lease,
            TasksProtocol(self._store, lease.owner_id),
            request if isinstance(request, dict) else None,
        )
        try:
            result = await tool.call(arguments if isinstance(arguments, dict) else {}, context)
            answer: JSONObject = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        except (LeaseLost, StoreUnavailable):
            raise  # the task is not this run's to end, or the store will answer again
        except ValidationError as error:
            fields = sorted({".".join(str(part) for part in e["loc"]) for e in error.errors()})
            answer = error_result(f"invalid arguments for {name}: {', '.join(fields)}")
        except (ToolError, TaskStoreError) as error:
            answer = error_result(str(error))
        except Exception:
            logger.exception("task tool %r raised", name)
            answer = error_result(f"Error executing tool {name}")
        sealed = self._sealer.seal(answer)
        return sealed


class _TaskNotification(mcp_types.Notification[dict[str, Any], str]):
    """A ``notifications/tasks`` frame."""

    method: str
    params: dict[str, Any]


class _AcknowledgeTasks:
    """The session, but the listen acknowledgement also lists the followed task ids."""

    def __init__(self, session: Any, task_ids: list[str], acknowledged: anyio.Event) -> None:
        self._session = session
        self._task_ids = task_ids
        self._acknowledged = acknowledged

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def send_notification(self, notification: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(notification, mcp_types.SubscriptionsAcknowledgedNotification):
            honored = notification.params.notifications.model_dump(by_alias=True, exclude_none=True)
            amended = mcp_types.SubscriptionFilter.model_validate(
                {**honored, "taskIds": list(self._task_ids)}
            )
            params = notification.params.model_copy(update={"notifications": amended})
            notification = notification.model_copy(update={"params": params})
            await self._session.send_notification(notification, *args, **kwargs)
            self._acknowledged.set()
            return
        await self._session.send_notification(notification, *args, **kwargs)


__all__ = [
    "TaskContext",
    "TaskSupport",
    "TaskTool",
    "TaskTools",
    "TasksExtension",
    "declared_tasks",
    "principal_owner",
]
