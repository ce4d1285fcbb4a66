"""The client half of the MCP tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663).

For the MCP Python SDK 2.x ``mcp.client.Client``. :class:`TasksClientExtension`
advertises the extension and claims ``resultType: "task"``, so a plain
``client.call_tool`` on a server that runs the call as a task returns the tool's
real ``CallToolResult``::

    tasks = TasksClientExtension(timeout=600)
    async with Client(url, extensions=[tasks], elicitation_callback=ask_user) as client:
        result = await client.call_tool("slow_square", {"n": 7})

The task is followed through ``notifications/tasks`` when the server offers them
for it (a ``subscriptions/listen`` whose acknowledgment names the task), else by
polling ``tasks/get`` at the task's ``pollIntervalMs``. Input the task asks for
(``elicitation/create`` requests in ``inputRequests``) is answered through the
client's elicitation callback with ``tasks/update``, each key once.

:meth:`TasksClientExtension.call_tool_task` returns a :class:`TaskHandle`
instead, for callers who drive the task themselves (``status``, ``wait``,
``result``, ``cancel``).

A task that does not give a result raises a :class:`TaskCallError`, which is the
SDK's ``MCPError``: :class:`TaskFailed` (with the task's JSON-RPC error),
:class:`TaskCancelled`, :class:`TaskLost` (the server no longer answers for the
task), :class:`TaskInputError` (input the client cannot give) and
:class:`TaskTimeout` (also a ``TimeoutError``).
"""

from __future__ import annotations

import contextvars
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import mcp_types
from mcp.client.client import Client
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    REQUEST_TIMEOUT,
    CallToolResult,
    ElicitRequest,
    ErrorData,
    Result,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field, ValidationError

from .._core.errors import InvalidArgument
from .protocol import EXTENSION_ID

__all__ = [
    "CreateTaskResult",
    "TaskCallError",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TaskInputError",
    "TaskLost",
    "TaskNotCreated",
    "TaskState",
    "TaskTimeout",
    "TasksClientExtension",
]

logger = logging.getLogger(__name__)

TaskStatusName = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
"""The statuses a task never leaves."""

_ACK_TIMEOUT = 10.0
"""Longest wait for the acknowledgment of a ``subscriptions/listen`` before polling instead."""
_CANCEL_TIMEOUT = 5.0
"""Longest wait for the best-effort ``tasks/cancel`` sent when a drive times out."""


# ---------------------------------------------------------------------------
# Wire models
# ---------------------------------------------------------------------------


class _TaskFields(Result):
    """The extension's ``Task`` fields, as the wire spells them (``taskId``, ``ttlMs``, ...)."""

    task_id: str
    status: TaskStatusName
    status_message: str | None = None
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class CreateTaskResult(_TaskFields):
    """The ``tools/call`` result of a call the server runs as a task (``resultType: "task"``)."""

    result_type: Literal["task"]


class TaskState(_TaskFields):
    """A task as ``tasks/get`` answers it and ``notifications/tasks`` carries it (``DetailedTask``).

    ``result`` is set when ``status`` is ``completed`` (the tool's result object),
    ``error`` when it is ``failed`` (the JSON-RPC error object), ``input_requests``
    when it is ``input_required`` (the outstanding requests, by key).
    """

    input_requests: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    result_type: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the task is completed, failed or cancelled."""
        return self.status in TERMINAL_STATUSES


class _TaskIdParams(mcp_types.RequestParams):
    task_id: str


class _UpdateParams(mcp_types.RequestParams):
    task_id: str
    input_responses: dict[str, Any] = Field(default_factory=dict)


class _GetTask(mcp_types.Request[_TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: _TaskIdParams
    name_param = "taskId"


class _UpdateTask(mcp_types.Request[_UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: _UpdateParams
    name_param = "taskId"


class _CancelTask(mcp_types.Request[_TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: _TaskIdParams
    name_param = "taskId"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class TaskCallError(MCPError):
    """A tool call the server ran as a task gave no result.

    An ``MCPError`` (the SDK's error type), so code catching the errors of
    ``call_tool`` catches these too. ``task_id`` names the task (``None`` only for
    :class:`TaskNotCreated`); ``state`` is the last state seen of it, if any.
    """

    def __init__(
        self,
        task_id: str | None,
        code: int,
        message: str,
        data: Any = None,
        *,
        state: TaskState | None = None,
    ) -> None:
        super().__init__(code, message, data)
        self.task_id = task_id
        self.state = state


class TaskFailed(TaskCallError):
    """The task ended ``failed``: ``code``, ``message`` and ``data`` are its JSON-RPC error."""


class TaskCancelled(TaskCallError):
    """The task ended ``cancelled`` (code -32603: a cancelled call has no result)."""


class TaskLost(TaskCallError):
    """The server no longer answers for the task, or answers what is not a task.

    ``code`` is the server's (``-32602`` for a task it does not know or that
    expired), or -32603 for a malformed answer.
    """


class TaskInputError(TaskCallError):
    """The task asks for input this client cannot give.

    Only ``elicitation/create`` requests are answered (through the client's
    elicitation callback); other kinds, and a callback that declines, end the drive.
    """


class TaskTimeout(TaskCallError, TimeoutError):
    """The task did not end within the timeout (code -32001). Also a ``TimeoutError``."""


class TaskNotCreated(TaskCallError):
    """:meth:`TasksClientExtension.call_tool_task` got the tool's result directly, not a task.

    The server decides per call whether to run it as a task. ``result`` is the
    ``CallToolResult`` it answered with.
    """

    def __init__(self, name: str, result: CallToolResult) -> None:
        super().__init__(
            None,
            INVALID_REQUEST,
            f"the server answered the call of {name!r} directly instead of running it as a task",
        )
        self.result = result


# ---------------------------------------------------------------------------
# Notification watching
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Watch:
    """What one drive has seen of one task through ``notifications/tasks``."""

    task_id: str
    frames: list[TaskState] = field(default_factory=list)
    live: bool = False
    ended: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)

    def push(self, state: TaskState) -> None:
        self.frames.append(state)
        self.wake.set()

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    async def next_frames(self, timeout: float | None) -> list[TaskState]:
        """The frames seen since the last call; none when the wait timed out or the stream ended."""
        if not self.frames and not self.ended:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await self.wake.wait()
        self.wake = anyio.Event()
        frames, self.frames = self.frames, []
        return frames


def _listen_support(session: ClientSession) -> bool:
    """Whether this SDK's session has the listen seams the task stream needs."""
    return (
        all(
            hasattr(session, name)
            for name in (
                "_register_listen_route",
                "_unregister_listen_route",
                "_stamp",
                "_dispatcher",
                "_task_group",
            )
        )
        and getattr(session, "_task_group", None) is not None
    )


def _honored_task_ids(honored: mcp_types.SubscriptionFilter | None) -> list[str]:
    if honored is None:
        return []
    task_ids = (honored.model_extra or {}).get("taskIds")
    return [t for t in task_ids if isinstance(t, str)] if isinstance(task_ids, list) else []


# ---------------------------------------------------------------------------
# The drive
# ---------------------------------------------------------------------------

_capture: contextvars.ContextVar[list[CreateTaskResult] | None] = contextvars.ContextVar(
    "taskstore_redis_mcp_capture_task", default=None
)
"""Set by ``call_tool_task``: the resolver hands the created task back instead of driving it."""


class _Captured(Exception):
    """Carries a created task out of ``Client.call_tool`` to ``call_tool_task``."""


class TasksClientExtension(ClientExtension):
    """The ``io.modelcontextprotocol/tasks`` extension for an SDK 2.x ``mcp.client.Client``.

    Pass it in ``Client(extensions=[...])``. It advertises the extension (on
    protocol versions that have extensions), so the server may run a
    ``tools/call`` as a task; ``client.call_tool`` then follows the task to its
    end and returns the tool's ``CallToolResult``, or raises a
    :class:`TaskCallError`. :meth:`call_tool_task` gives a :class:`TaskHandle`
    instead.

    Args:
        timeout: Seconds a transparent ``call_tool`` may spend following its task
            (answering input included); ``None`` for no bound. On expiry the task
            is cancelled (best effort, if ``cancel_on_timeout``) and
            :class:`TaskTimeout` raised.
        notifications: Try ``notifications/tasks`` (``subscriptions/listen``)
            before polling. Polling is used whenever the server does not
            acknowledge the task in its subscription.
        min_poll_interval: Floor, in seconds, of the time between two polls, so
            a server that asks for ``pollIntervalMs: 0`` cannot make the client spin.
        default_poll_interval: Seconds between polls once the poll ramp (from
            ``min_poll_interval``, doubling) reaches it, for a task that gives no
            ``pollIntervalMs``.
        notification_check_interval: While following notifications, seconds of
            silence after which one ``tasks/get`` checks the task anyway (a lost
            frame cannot stall the call); ``None`` to rely on the stream alone
            (its end still falls back to polling).
        cancel_on_timeout: Send ``tasks/cancel`` when ``timeout`` runs out on a
            transparent call, whose caller will never see the result.

    Raises:
        InvalidArgument: A negative or zero interval or timeout.

    """

    identifier = EXTENSION_ID

    def __init__(
        self,
        *,
        timeout: float | None = None,
        notifications: bool = True,
        min_poll_interval: float = 0.05,
        default_poll_interval: float = 1.0,
        notification_check_interval: float | None = 30.0,
        cancel_on_timeout: bool = True,
    ) -> None:
        for name, value in (
            ("timeout", timeout),
            ("min_poll_interval", min_poll_interval),
            ("default_poll_interval", default_poll_interval),
            ("notification_check_interval", notification_check_interval),
        ):
            if value is not None and not (
                isinstance(value, int | float) and value > 0 and math.isfinite(value)
            ):
                raise InvalidArgument(f"{name} must be a positive number of seconds, not {value!r}")
        if default_poll_interval < min_poll_interval:
            raise InvalidArgument(
                f"default_poll_interval ({default_poll_interval}) is below "
                f"min_poll_interval ({min_poll_interval})"
            )
        self.timeout = timeout
        self.use_notifications = notifications
        self.min_poll_interval = float(min_poll_interval)
        self.default_poll_interval = float(default_poll_interval)
        self.notification_check_interval = notification_check_interval
        self.cancel_on_timeout = cancel_on_timeout
        self._watches: dict[str, set[_Watch]] = {}

    # -- the ClientExtension surface ------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The extension defines no settings: an empty object."""
        return {}

    def claims(self) -> Sequence[ResultClaim[Any]]:
        """The claim on ``resultType: "task"`` of ``tools/call``, resolved by following the task."""
        return (
            ResultClaim(
                result_type="task",
                model=CreateTaskResult,
                resolve=self._resolve,
                protocol_versions=frozenset(MODERN_PROTOCOL_VERSIONS),
            ),
        )

    def notifications(self) -> Sequence[NotificationBinding[Any]]:
        """The binding that hands ``notifications/tasks`` frames to the drives waiting on them."""
        return (
            NotificationBinding(
                method="notifications/tasks", params_type=TaskState, handler=self._on_frame
            ),
        )

    async def _on_frame(self, state: TaskState) -> None:
        for watch in self._watches.get(state.task_id, ()):
            if watch.live:
                watch.push(state)

    async def _resolve(self, created: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
        if (slot := _capture.get()) is not None:
            slot.append(created)
            raise _Captured
        try:
            final = await self._drive(
                ctx.session,
                created.task_id,
                set(),
                timeout=self.timeout,
                request_timeout=ctx.read_timeout_seconds,
            )
        except TaskTimeout:
            if self.cancel_on_timeout:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_TIMEOUT):
                    try:
                        await _send_cancel(ctx.session, created.task_id, _CANCEL_TIMEOUT)
                    except MCPError as error:
                        logger.info(
                            "tasks/cancel of timed-out task %r refused: %s", created.task_id, error
                        )
            raise
        return _final_result(final)

    # -- the explicit handle ---------------------------------------------------------

    async def call_tool_task(
        self,
        client: Client,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        read_timeout_seconds: float | None = None,
        meta: mcp_types.RequestParamsMeta | None = None,
    ) -> TaskHandle:
        """Call a tool and return a :class:`TaskHandle` as soon as the server created its task.

        ``client`` must have been built with this extension in its ``extensions``.
        The call goes through ``client.call_tool`` (input asked for before the
        task is created, and a re-listed tool schema, are handled as there).

        Raises:
            TaskNotCreated: The server answered with the tool's result directly;
                the error carries it as ``result``.

        """
        slot: list[CreateTaskResult] = []
        token = _capture.set(slot)
        try:
            result = await client.call_tool(
                name, arguments, read_timeout_seconds=read_timeout_seconds, meta=meta
            )
        except _Captured:
            return TaskHandle(
                self, client, name, slot[0], read_timeout_seconds=read_timeout_seconds
            )
        finally:
            _capture.reset(token)
        raise TaskNotCreated(name, result)

    # -- following one task ------------------------------------------------------------

    async def _drive(
        self,
        session: ClientSession,
        task_id: str,
        answered: set[str],
        *,
        timeout: float | None,
        request_timeout: float | None = None,
    ) -> TaskState:
        """Follow a task to a terminal state, answering its input; return that state."""
        last: list[TaskState] = []
        try:
            with anyio.fail_after(timeout):
                return await self._follow(session, task_id, answered, last, request_timeout)
        except TimeoutError as error:
            if isinstance(error, TaskTimeout):
                raise
            raise TaskTimeout(
                task_id,
                REQUEST_TIMEOUT,
                f"task {task_id!r} did not end within {timeout} s",
                state=last[-1] if last else None,
            ) from None

    async def _follow(
        self,
        session: ClientSession,
        task_id: str,
        answered: set[str],
        last: list[TaskState],
        request_timeout: float | None,
    ) -> TaskState:
        async with self._watch(session, task_id) as watch:
            # One look right after subscribing: the task may have ended before the subscription.
            state = await _send_get(session, task_id, request_timeout)
            last.append(state)
            ramp = self.min_poll_interval
            while True:
                if state.terminal:
                    return state
                if state.status == "input_required":
                    await _answer(session, state, answered, request_timeout)
                if watch.live and (not watch.ended or watch.frames):
                    frames = await watch.next_frames(self.notification_check_interval)
                    # Level triggers: a terminal frame ends the drive, every frame's input is
                    # answered, and a silence or an ended stream is checked with tasks/get.
                    for frame in frames:
                        if frame.terminal:
                            return frame
                        if frame.status == "input_required":
                            await _answer(session, frame, answered, request_timeout)
                    if frames:
                        state = frames[-1]
                        last.append(state)
                        continue
                    if watch.ended:
                        logger.info(
                            "task %r: notification stream ended; polling tasks/get", task_id
                        )
                else:
                    delay, ramp = self._poll_delay(state, ramp)
                    await anyio.sleep(delay)
                state = await _send_get(session, task_id, request_timeout)
                last.append(state)

    def _poll_delay(self, state: TaskState, ramp: float) -> tuple[float, float]:
        """Seconds until the next poll, and the ramp for the poll after it."""
        if state.poll_interval_ms is not None:
            return max(state.poll_interval_ms / 1000, self.min_poll_interval), ramp
        return ramp, min(ramp * 2, self.default_poll_interval)

    @asynccontextmanager
    async def _watch(self, session: ClientSession, task_id: str) -> AsyncIterator[_Watch]:
        """Subscribe to ``notifications/tasks`` of one task; ``live`` says if the server agreed."""
        watch = _Watch(task_id)
        if (
            not self.use_notifications
            or session.protocol_version not in MODERN_PROTOCOL_VERSIONS
            or not _listen_support(session)
        ):
            yield watch
            return
        self._watches.setdefault(task_id, set()).add(watch)
        watch.live = True  # frames arriving between the ack and the first tasks/get are kept
        request_id = f"tasks-listen-{uuid.uuid4().hex}"
        data: dict[str, Any] = {
            "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": [task_id]}},
        }
        opts: CallOptions = {"request_id": request_id}
        # The SDK's Client.listen() has no filter key for task ids, so the stream is opened as it
        # opens its own: a registered route takes the acknowledgment, the frames reach _on_frame.
        session._stamp(data, opts)
        route = session._register_listen_route(request_id)

        scope = anyio.CancelScope()

        async def listen() -> None:
            with scope:
                try:
                    await session._dispatcher.send_raw_request(
                        data["method"], data.get("params"), opts
                    )
                except MCPError as error:
                    route.settle("lost", error=error)
                except Exception as error:  # any failure of the stream means polling, never a hang
                    route.settle("lost", error=MCPError(INTERNAL_ERROR, str(error)))
                else:
                    route.set_acked(mcp_types.SubscriptionFilter())
                    route.settle("graceful")
            watch.end()

        try:
            # The stream runs in the session's task group, as the SDK's own listen() does, so
            # that an error of the drive reaches the caller as it is (no exception group).
            task_group = session._task_group
            assert task_group is not None  # checked by _listen_support
            task_group.start_soon(listen)
            with anyio.move_on_after(_ACK_TIMEOUT):
                await route.acked.wait()
            watch.live = route.end is None and task_id in _honored_task_ids(route.honored)
            if not watch.live:
                logger.debug(
                    "task %r: no notifications/tasks from the server; polling tasks/get", task_id
                )
                scope.cancel()
            yield watch
        finally:
            scope.cancel()
            session._unregister_listen_route(request_id)
            watches = self._watches.get(task_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[task_id]


class TaskHandle:
    """A tool call the server runs as a task, for a caller who drives it.

    Made by :meth:`TasksClientExtension.call_tool_task`. ``wait`` and ``result``
    follow the task as the transparent ``call_tool`` does (notifications or
    polling, input answered through the client's elicitation callback, each
    request key once for the handle's lifetime); the terminal state is kept, so
    ``result`` after ``wait`` sends nothing.
    """

    def __init__(
        self,
        extension: TasksClientExtension,
        client: Client,
        tool_name: str,
        created: CreateTaskResult,
        *,
        read_timeout_seconds: float | None = None,
    ) -> None:
        self._extension = extension
        self._client = client
        self._read_timeout = read_timeout_seconds
        self._answered: set[str] = set()
        self._final: TaskState | None = None
        self._lock = anyio.Lock()
        self.tool_name = tool_name
        """The name of the tool called."""
        self.created = created
        """The ``CreateTaskResult`` the server answered the call with."""

    @property
    def task_id(self) -> str:
        """The server's id of the task."""
        return self.created.task_id

    async def status(self) -> TaskState:
        """The task's current state (one ``tasks/get``); answers no input.

        Raises:
            TaskLost: The server no longer answers for the task.

        """
        if self._final is not None:
            return self._final
        state = await _send_get(self._client.session, self.task_id, self._read_timeout)
        if state.terminal:
            self._final = state
        return state

    async def wait(self, timeout: float | None = None) -> TaskState:
        """Follow the task to a terminal state and return it (failed and cancelled included).

        Input the task asks for is answered on the way.

        Args:
            timeout: Seconds to wait at most; ``None`` for no bound. The task goes on
                when it runs out.

        Raises:
            TaskTimeout: The task did not end within ``timeout``.
            TaskLost: The server no longer answers for the task.
            TaskInputError: The task asks for input the client cannot give.

        """
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise InvalidArgument(f"timeout must be a positive number of seconds, not {timeout!r}")
        async with self._lock:
            if self._final is None:
                self._final = await self._extension._drive(
                    self._client.session,
                    self.task_id,
                    self._answered,
                    timeout=timeout,
                    request_timeout=self._read_timeout,
                )
            return self._final

    async def result(self, timeout: float | None = None) -> CallToolResult:
        """Follow the task to its end and return the tool's result, validated as ``call_tool`` does.

        Raises:
            TaskFailed: The task failed; its JSON-RPC error is the error's code and message.
            TaskCancelled: The task was cancelled.
            TaskTimeout: The task did not end within ``timeout`` (it goes on).
            TaskLost: The server no longer answers for the task.
            TaskInputError: The task asks for input the client cannot give.

        """
        final = _final_result(await self.wait(timeout))
        if not final.is_error:
            await self._client.session.validate_tool_result(self.tool_name, final)
        return final

    async def cancel(self) -> None:
        """Ask the server to cancel the task (``tasks/cancel``); it may still end otherwise.

        Raises:
            TaskLost: The server refused: it does not know the task.

        """
        await _send_cancel(self._client.session, self.task_id, self._read_timeout)


# ---------------------------------------------------------------------------
# Wire senders and outcome
# ---------------------------------------------------------------------------


def _lost(task_id: str, method: str, error: MCPError) -> TaskLost:
    return TaskLost(
        task_id,
        error.code,
        f"{method} of task {task_id!r} failed: {error.message}",
        error.data,
    )


async def _send_get(session: ClientSession, task_id: str, timeout: float | None) -> TaskState:
    request = _GetTask(params=_TaskIdParams(task_id=task_id))
    try:
        state = await session.send_request(request, TaskState, request_read_timeout_seconds=timeout)
    except MCPError as error:
        raise _lost(task_id, "tasks/get", error) from error
    except ValidationError as error:
        raise TaskLost(
            task_id,
            INTERNAL_ERROR,
            f"tasks/get of task {task_id!r}: the server's answer is not a task: {error}",
        ) from error
    if state.task_id != task_id:
        raise TaskLost(
            task_id,
            INTERNAL_ERROR,
            f"tasks/get of task {task_id!r} answered task {state.task_id!r}",
        )
    return state


async def _send_cancel(session: ClientSession, task_id: str, timeout: float | None) -> None:
    try:
        await session.send_request(
            _CancelTask(params=_TaskIdParams(task_id=task_id)),
            mcp_types.EmptyResult,
            request_read_timeout_seconds=timeout,
        )
    except MCPError as error:
        raise _lost(task_id, "tasks/cancel", error) from error


async def _answer(
    session: ClientSession, state: TaskState, answered: set[str], timeout: float | None
) -> None:
    """Answer the input requests not answered yet, and send the answers with tasks/update."""
    task_id = state.task_id
    responses: dict[str, Any] = {}
    for key, raw in (state.input_requests or {}).items():
        if key in answered:
            continue
        method = raw.get("method") if isinstance(raw, dict) else None
        if method != "elicitation/create":
            raise TaskInputError(
                task_id,
                INVALID_REQUEST,
                f"task {task_id!r} asks for input with {method!r} (key {key!r}); "
                "only elicitation/create is answered, through the client's elicitation callback",
                state=state,
            )
        try:
            request = ElicitRequest.model_validate(raw)
        except ValidationError as error:
            raise TaskInputError(
                task_id,
                INVALID_REQUEST,
                f"task {task_id!r}: malformed elicitation request {key!r}: {error}",
                state=state,
            ) from error
        context = ClientRequestContext(
            session=session, request_id=f"{task_id}/{key}", meta=request.params.meta
        )
        answer = await session.dispatch_input_request(context, request)
        if isinstance(answer, ErrorData):
            raise TaskInputError(
                task_id,
                answer.code,
                f"task {task_id!r}: the elicitation callback declined {key!r}: {answer.message}",
                answer.data,
                state=state,
            )
        responses[key] = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
    if not responses:
        return
    update = _UpdateTask(params=_UpdateParams(task_id=task_id, input_responses=responses))
    try:
        await session.send_request(
            update, mcp_types.EmptyResult, request_read_timeout_seconds=timeout
        )
    except MCPError as error:
        raise _lost(task_id, "tasks/update", error) from error
    answered.update(responses)


def _final_result(state: TaskState) -> CallToolResult:
    """The tool's result of a terminal task, or the error it ended with."""
    task_id = state.task_id
    if state.status == "completed":
        try:
            return CallToolResult.model_validate(state.result or {}, by_name=False)
        except ValidationError as error:
            raise TaskLost(
                task_id,
                INTERNAL_ERROR,
                f"task {task_id!r} completed with a malformed tool result: {error}",
                state=state,
            ) from error
    if state.status == "failed":
        rpc_error = state.error or {}
        code = rpc_error.get("code")
        message = rpc_error.get("message")
        if not isinstance(code, int) or isinstance(code, bool):
            code = INTERNAL_ERROR
        if not isinstance(message, str) or not message:
            message = state.status_message or f"task {task_id!r} failed"
        raise TaskFailed(task_id, code, message, rpc_error.get("data"), state=state)
    reason = f": {state.status_message}" if state.status_message else ""
    raise TaskCancelled(
        task_id, INTERNAL_ERROR, f"task {task_id!r} was cancelled{reason}", state=state
    )
