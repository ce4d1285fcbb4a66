"""TasksClientExtension: the client half of the MCP tasks extension on the SDK 2.x ``Client``.

Against a real fastmcp-tasks server (FastMCP 4, Docket on the suite's Redis, streamable
HTTP on a loopback port), which offers no ``notifications/tasks``: a plain ``call_tool``
resolves its task by polling, answers the task's elicitation, and the explicit handle
gives status, wait, result and cancel.

Against examples/mcp_tasks_server.py (this library's ``TasksExtension`` on an SDK 2.x
``MCPServer``, in a subprocess on a loopback port), which offers ``notifications/tasks``:
the task is followed through them, with the one ``tasks/get`` right after subscribing.

Against SDK 2.x ``MCPServer`` servers whose tasks extension is scripted here: what a
client does with a task that fails, is cancelled, is forgotten by the server, asks for
input it cannot give, or never ends; and how it follows a task through
``notifications/tasks`` when the server offers them, and falls back to polling when the
stream ends.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from time import monotonic
from typing import Any, Literal, cast

import anyio
import pytest

pytest.importorskip("mcp.client.extension", reason="the MCP SDK 2.x is the `mcp` extra")

import httpx2
import mcp_types
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict

from taskstore_redis._core.errors import InvalidArgument
from taskstore_redis.mcp._client import (
    TaskCallError,
    TaskCancelled,
    TaskFailed,
    TaskInputError,
    TaskLost,
    TaskNotCreated,
    TasksClientExtension,
    TaskState,
    TaskTimeout,
)
from tests.example_servers import free_port, running

GUARD = 60.0
"""Bound of every test's drive: a hang fails the test instead of stalling the suite."""

ElicitParams = mcp_types.ElicitRequestParams


class Elicitations:
    """An elicitation callback that answers ``value`` and records what it was asked.

    The answer goes in the first property of the requested schema.
    """

    def __init__(self, value: str = "Ada") -> None:
        self.value = value
        self.asked: list[str] = []

    async def __call__(
        self, context: ClientRequestContext, params: ElicitParams
    ) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        assert isinstance(params, mcp_types.ElicitRequestFormParams)
        self.asked.append(params.message)
        [field, *_] = params.requested_schema["properties"]
        return mcp_types.ElicitResult(action="accept", content={field: self.value})


# ---------------------------------------------------------------------------
# A real fastmcp-tasks server
# ---------------------------------------------------------------------------

fastmcp = pytest.importorskip("fastmcp", reason="FastMCP 4 is in the test extra")
fastmcp_tasks = pytest.importorskip("fastmcp_tasks", reason="fastmcp-tasks is in the test extra")


FASTMCP_APP = Path(__file__).resolve().parent / "fastmcp_tasks_app.py"


class Wire:
    """The MCP methods a client sent over HTTP, in order (from the Mcp-Method header)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._http: list[httpx2.AsyncClient] = []

    async def on_request(self, request: httpx2.Request) -> None:
        method = request.headers.get("mcp-method")
        if method is not None:
            self.seen.append(method)

    def client(self, url: str) -> Any:
        http = httpx2.AsyncClient(
            event_hooks={"request": [self.on_request]}, timeout=httpx2.Timeout(30.0, read=300.0)
        )
        self._http.append(http)
        return streamable_http_client(url, http_client=http)

    async def aclose(self) -> None:
        for http in self._http:
            await http.aclose()


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    recorder = Wire()
    yield recorder
    await recorder.aclose()


@pytest.fixture
def fastmcp_url(redis_url: str) -> Iterator[str]:
    """A real fastmcp-tasks server (tests/fastmcp_tasks_app.py) in a process of its own."""
    port = free_port()
    with running([str(FASTMCP_APP), "--redis-url", redis_url, "--port", str(port)], port):
        yield f"http://127.0.0.1:{port}/mcp"


def text_of(result: mcp_types.CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, mcp_types.TextContent)
    return content.text


pytestmark = [pytest.mark.anyio]


@pytest.mark.redis
async def test_call_tool_resolves_a_fastmcp_task_by_polling(fastmcp_url: str, wire: Wire) -> None:
    tasks = TasksClientExtension(timeout=GUARD)
    async with Client(wire.client(fastmcp_url), extensions=[tasks]) as client:
        assert client.session.protocol_version in MODERN_PROTOCOL_VERSIONS
        result = await client.call_tool("slow_square", {"n": 7})
    assert not result.is_error
    assert text_of(result) == "49"
    assert result.structured_content == {"result": 49}
    # The call was a task, and the server did not take it in a subscription: polled.
    calls = wire.seen[wire.seen.index("tools/call") :]
    assert calls[1] == "subscriptions/listen"
    assert calls.count("tasks/get") >= 1
    assert "tasks/update" not in calls


@pytest.mark.redis
async def test_call_tool_answers_a_fastmcp_tasks_elicitation(fastmcp_url: str, wire: Wire) -> None:
    elicit = Elicitations("Ada")
    tasks = TasksClientExtension(timeout=GUARD)
    async with Client(
        wire.client(fastmcp_url), extensions=[tasks], elicitation_callback=elicit
    ) as client:
        result = await client.call_tool("greet", {})
    assert text_of(result) == "hello Ada"
    assert elicit.asked == ["Your name?"]
    assert wire.seen.count("tasks/update") == 1


@pytest.mark.redis
async def test_handle_status_wait_and_result(fastmcp_url: str, wire: Wire) -> None:
    tasks = TasksClientExtension()
    async with Client(wire.client(fastmcp_url), extensions=[tasks]) as client:
        handle = await tasks.call_tool_task(client, "slow_square", {"n": 5})
        assert handle.task_id == handle.created.task_id != ""
        assert handle.tool_name == "slow_square"
        first = await handle.status()
        assert first.task_id == handle.task_id
        assert first.status in {"working", "completed"}
        final = await handle.wait(timeout=GUARD)
        assert final.status == "completed"
        gets = wire.seen.count("tasks/get")
        result = await handle.result()
        assert text_of(result) == "25"
        assert await handle.status() is final
        # The terminal state is kept: neither result nor status asked the server again.
        assert wire.seen.count("tasks/get") == gets


@pytest.mark.redis
async def test_handle_cancel(fastmcp_url: str) -> None:
    tasks = TasksClientExtension()
    async with Client(fastmcp_url, extensions=[tasks]) as client:
        handle = await tasks.call_tool_task(client, "forever", {})
        await handle.cancel()
        final = await handle.wait(timeout=GUARD)
        assert final.status == "cancelled"
        with pytest.raises(TaskCancelled) as caught:
            await handle.result()
    assert caught.value.task_id == handle.task_id
    assert handle.task_id in str(caught.value)


@pytest.mark.redis
async def test_call_tool_task_on_a_call_not_run_as_a_task(fastmcp_url: str) -> None:
    tasks = TasksClientExtension()
    async with Client(fastmcp_url, extensions=[tasks]) as client:
        with pytest.raises(TaskNotCreated) as caught:
            await tasks.call_tool_task(client, "plain", {"n": 1})
        # The same call through call_tool is an ordinary call.
        assert text_of(await client.call_tool("plain", {"n": 1})) == "2"
    assert text_of(caught.value.result) == "2"


@pytest.mark.redis
async def test_handle_wait_times_out_and_the_task_goes_on(fastmcp_url: str) -> None:
    tasks = TasksClientExtension()
    async with Client(fastmcp_url, extensions=[tasks]) as client:
        handle = await tasks.call_tool_task(client, "forever", {})
        with pytest.raises(TaskTimeout) as caught:
            await handle.wait(timeout=0.3)
        assert isinstance(caught.value, TimeoutError)
        assert (await handle.status()).status == "working"
        await handle.cancel()


# ---------------------------------------------------------------------------
# Scripted tasks servers (SDK 2.x MCPServer, in process)
# ---------------------------------------------------------------------------


class _Params(mcp_types.RequestParams):
    model_config = ConfigDict(extra="allow")


class _FrameParams(mcp_types.NotificationParams):
    model_config = ConfigDict(extra="allow")


class _Frame(mcp_types.Notification[_FrameParams, Literal["notifications/tasks"]]):
    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: _FrameParams


Script = Callable[[int], dict[str, Any]]
"""The task's fields at the n-th ``tasks/get`` (1-based), or raises an ``MCPError``."""


class ScriptedTasks(Extension):
    """A tasks extension that runs every tool call as one task whose states are scripted.

    Records (``seen``) every method the client sends, and the ``tasks/update`` answers. With
    ``frames``, it also serves ``subscriptions/listen``: it honors the task ids and
    pushes ``frames`` (a list of task states) as ``notifications/tasks``, and
    ``frames_after_update`` once the client sent ``tasks/update``; then it ends the
    stream when ``end_stream`` (a graceful close), else keeps it open.
    """

    identifier = "io.modelcontextprotocol/tasks"

    def __init__(
        self,
        script: Script,
        *,
        poll_interval_ms: int | None = 10,
        frames: list[dict[str, Any]] | None = None,
        frames_after_update: list[dict[str, Any]] | None = None,
        end_stream: bool = False,
    ) -> None:
        self.script = script
        self.poll_interval_ms = poll_interval_ms
        self.frames = frames
        self.frames_after_update = frames_after_update or []
        self.updated = anyio.Event()
        self.end_stream = end_stream
        self.task_id = f"task-{uuid.uuid4().hex}"
        self.seen: list[str] = []
        self.updates: list[dict[str, Any]] = []
        self.get_times: list[float] = []
        self.gets = 0

    def fields(self, **more: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "taskId": self.task_id,
            "status": "working",
            "createdAt": "2026-01-01T00:00:00Z",
            "lastUpdatedAt": "2026-01-01T00:00:00Z",
            "ttlMs": 60_000,
        }
        if self.poll_interval_ms is not None:
            base["pollIntervalMs"] = self.poll_interval_ms
        return {**base, **more}

    def methods(self) -> list[MethodBinding]:
        versions = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", _Params, self._get, versions),
            MethodBinding("tasks/update", _Params, self._update, versions),
            MethodBinding("tasks/cancel", _Params, self._cancel, versions),
        ]

    async def intercept_tool_call(
        self,
        params: mcp_types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        self.seen.append("tools/call")
        if params.name == "direct":
            return await call_next(ctx)
        return {"resultType": "task", **self.fields()}

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: _Params) -> HandlerResult:
        self.seen.append("tasks/get")
        self.get_times.append(monotonic())
        self.gets += 1
        return {"resultType": "complete", **self.fields(**self.script(self.gets))}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: _Params) -> HandlerResult:
        self.seen.append("tasks/update")
        self.updates.append(dict(params.model_extra or {}))
        self.updated.set()
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: _Params) -> HandlerResult:
        self.seen.append("tasks/cancel")
        return {"resultType": "complete"}

    async def listen(
        self,
        ctx: ServerRequestContext[Any, Any],
        params: mcp_types.SubscriptionsListenRequestParams,
    ) -> mcp_types.SubscriptionsListenResult:
        self.seen.append("subscriptions/listen")
        assert self.frames is not None
        meta = {SUBSCRIPTION_ID_META_KEY: ctx.request_id}
        task_ids = (params.notifications.model_extra or {}).get("taskIds") or []
        await ctx.session.send_notification(
            mcp_types.SubscriptionsAcknowledgedNotification(
                params=mcp_types.SubscriptionsAcknowledgedNotificationParams(
                    notifications=mcp_types.SubscriptionFilter.model_validate(
                        {"taskIds": task_ids}
                    ),
                    _meta=meta,
                )
            ),
            related_request_id=ctx.request_id,
        )

        async def push(frames: list[dict[str, Any]]) -> None:
            for frame in frames:
                params_ = _FrameParams.model_validate({**self.fields(**frame), "_meta": meta})
                await ctx.session.send_notification(
                    cast(Any, _Frame(params=params_)), related_request_id=ctx.request_id
                )

        await push(self.frames)
        if self.frames_after_update:
            await self.updated.wait()
            await push(self.frames_after_update)
        if not self.end_stream:
            await anyio.sleep_forever()
        return mcp_types.SubscriptionsListenResult(_meta=meta)


def scripted_server(tasks: ScriptedTasks) -> MCPServer:
    server = MCPServer("scripted-tasks", extensions=[tasks])

    @server.tool()
    def direct(n: int) -> int:
        return n + 1

    @server.tool(structured_output=False)
    def job(n: int) -> int:
        return n  # never runs: the extension answers with a task

    if tasks.frames is not None:
        server._lowlevel_server.add_request_handler(
            "subscriptions/listen", mcp_types.SubscriptionsListenRequestParams, tasks.listen
        )
    return server


def completed(text: str) -> dict[str, Any]:
    return {
        "status": "completed",
        "result": {"content": [{"type": "text", "text": text}], "isError": False},
    }


def after(n: int, then: dict[str, Any], before: dict[str, Any] | None = None) -> Script:
    """``before`` (working) for the first ``n - 1`` gets, ``then`` from the n-th on."""
    return lambda get: then if get >= n else (before or {"status": "working"})


async def call(
    tasks: ScriptedTasks,
    client_tasks: TasksClientExtension | None = None,
    *,
    elicit: Elicitations | None = None,
    sampling: bool = False,
) -> mcp_types.CallToolResult:
    extension = client_tasks or TasksClientExtension(timeout=GUARD)
    kwargs: dict[str, Any] = {}
    if elicit is not None:
        kwargs["elicitation_callback"] = elicit
    if sampling:

        async def sample(
            context: ClientRequestContext, params: mcp_types.CreateMessageRequestParams
        ) -> mcp_types.CreateMessageResult:
            raise AssertionError("a task's sampling request must not reach the callback")

        kwargs["sampling_callback"] = sample
    failure: Exception | None = None
    async with Client(scripted_server(tasks), extensions=[extension], **kwargs) as client:
        with anyio.fail_after(GUARD):
            try:
                return await client.call_tool("job", {"n": 1})
            except Exception as error:  # raised below: the in-process client would wrap it
                failure = error
    assert failure is not None
    raise failure


async def test_completed_task_gives_the_tools_result() -> None:
    tasks = ScriptedTasks(after(3, completed("done")))
    result = await call(tasks)
    assert text_of(result) == "done"
    assert tasks.seen.count("tasks/get") == 3


async def test_failed_task_raises_its_json_rpc_error() -> None:
    error = {"code": -32050, "message": "rate limit exceeded", "data": {"retryAfter": 3}}
    tasks = ScriptedTasks(after(2, {"status": "failed", "error": error}))
    with pytest.raises(TaskFailed) as caught:
        await call(tasks)
    assert isinstance(caught.value, MCPError)
    assert (caught.value.code, caught.value.message) == (-32050, "rate limit exceeded")
    assert caught.value.data == {"retryAfter": 3}
    assert caught.value.task_id == tasks.task_id
    assert caught.value.state is not None and caught.value.state.status == "failed"


async def test_failed_task_with_a_malformed_error_still_raises() -> None:
    tasks = ScriptedTasks(
        after(1, {"status": "failed", "error": {"code": "x"}, "statusMessage": "broke"})
    )
    with pytest.raises(TaskFailed) as caught:
        await call(tasks)
    assert (caught.value.code, caught.value.message) == (-32603, "broke")


async def test_cancelled_task_raises() -> None:
    tasks = ScriptedTasks(after(2, {"status": "cancelled", "statusMessage": "by operator"}))
    with pytest.raises(TaskCancelled, match="was cancelled: by operator") as caught:
        await call(tasks)
    assert caught.value.task_id == tasks.task_id


async def test_task_the_server_forgot_raises_instead_of_hanging() -> None:
    def script(get: int) -> dict[str, Any]:
        if get >= 2:
            raise MCPError(-32602, "Failed to retrieve task: Task not found")
        return {"status": "working"}

    tasks = ScriptedTasks(script)
    with pytest.raises(TaskLost) as caught:
        await call(tasks)
    assert caught.value.code == -32602
    assert tasks.task_id in str(caught.value)
    assert "Task not found" in str(caught.value)
    assert tasks.seen.count("tasks/get") == 2


async def test_answer_that_is_not_a_task_raises() -> None:
    tasks = ScriptedTasks(after(1, {"status": "exploded"}))
    with pytest.raises(TaskLost) as caught:
        await call(tasks)
    assert caught.value.code == -32603
    assert "not a task" in str(caught.value)


async def test_completed_task_with_a_malformed_result_raises() -> None:
    tasks = ScriptedTasks(after(1, {"status": "completed", "result": {"content": "nope"}}))
    with pytest.raises(TaskCallError, match="malformed tool result"):
        await call(tasks)


def asking(key: str, request: dict[str, Any]) -> dict[str, Any]:
    return {"status": "input_required", "inputRequests": {key: request}}


ELICIT_REQUEST: dict[str, Any] = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Which colour?",
        "requestedSchema": {"type": "object", "properties": {"value": {"type": "string"}}},
    },
}


async def test_each_input_request_is_answered_once() -> None:
    # The server shows the request again on the polls after the answer (its answer is
    # eventually consistent), then a second request, then the result.
    def script(get: int) -> dict[str, Any]:
        if get <= 3:
            return asking("colour", ELICIT_REQUEST)
        if get <= 5:
            shade = {**ELICIT_REQUEST["params"], "message": "Which shade?"}
            return asking("shade", {**ELICIT_REQUEST, "params": shade})
        return completed("blue, dark")

    tasks = ScriptedTasks(script)
    elicit = Elicitations("blue")
    result = await call(tasks, elicit=elicit)
    assert text_of(result) == "blue, dark"
    assert elicit.asked == ["Which colour?", "Which shade?"]
    assert [list(update["inputResponses"]) for update in tasks.updates] == [["colour"], ["shade"]]
    assert tasks.updates[0] == {
        "taskId": tasks.task_id,
        "inputResponses": {"colour": {"action": "accept", "content": {"value": "blue"}}},
    }


async def test_sampling_input_request_is_a_clear_error() -> None:
    sampling = {
        "method": "sampling/createMessage",
        "params": {"messages": [], "maxTokens": 10},
    }
    tasks = ScriptedTasks(after(1, asking("draft", sampling)))
    with pytest.raises(TaskInputError, match="sampling/createMessage") as caught:
        await call(tasks, sampling=True)
    assert caught.value.task_id == tasks.task_id
    assert tasks.updates == []


async def test_input_request_without_an_elicitation_callback_is_a_clear_error() -> None:
    tasks = ScriptedTasks(after(1, asking("colour", ELICIT_REQUEST)))
    with pytest.raises(TaskInputError, match="elicitation callback declined"):
        await call(tasks)
    assert tasks.updates == []


async def test_timeout_bounds_the_whole_drive_and_cancels_the_task() -> None:
    tasks = ScriptedTasks(lambda get: {"status": "working"})
    with pytest.raises(TaskTimeout) as caught:
        await call(tasks, TasksClientExtension(timeout=0.3))
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.task_id == tasks.task_id
    assert tasks.seen[-1] == "tasks/cancel"


async def test_poll_interval_of_zero_is_floored() -> None:
    tasks = ScriptedTasks(after(6, completed("ok")), poll_interval_ms=0)
    await call(tasks, TasksClientExtension(timeout=GUARD, min_poll_interval=0.05))
    gaps = [b - a for a, b in zip(tasks.get_times, tasks.get_times[1:], strict=False)]
    assert len(gaps) == 5
    # A lower bound only: the client sleeps at least the floor between two polls.
    assert min(gaps) >= 0.045


async def test_call_tool_task_on_a_direct_answer_carries_the_result() -> None:
    tasks = ScriptedTasks(after(1, completed("unused")))
    client_tasks = TasksClientExtension()
    failure: Exception | None = None
    with pytest.raises(TaskNotCreated) as caught:
        async with Client(scripted_server(tasks), extensions=[client_tasks]) as client:
            try:
                await client_tasks.call_tool_task(client, "direct", {"n": 1})
            except TaskNotCreated as error:
                failure = error
        assert failure is not None
        raise failure
    assert text_of(caught.value.result) == "2"
    assert caught.value.task_id is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"min_poll_interval": math.nan},
        {"default_poll_interval": math.inf},
        {"notification_check_interval": 0},
        {"min_poll_interval": 2.0, "default_poll_interval": 1.0},
    ],
)
def test_bad_settings_raise_invalid_argument(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        TasksClientExtension(**kwargs)


def test_task_state_reads_the_wire_shape() -> None:
    state = TaskState.model_validate(
        {"taskId": "t", "status": "failed", "error": {"code": 1}, "pollIntervalMs": 5},
        by_name=False,
    )
    assert (state.task_id, state.terminal, state.poll_interval_ms) == ("t", True, 5)


# -- notifications/tasks ------------------------------------------------------------


async def test_notifications_resolve_the_task_without_polling() -> None:
    tasks = ScriptedTasks(
        lambda get: {"status": "working"},
        frames=[{"status": "working"}, completed("pushed")],
    )
    result = await call(
        tasks, TasksClientExtension(timeout=GUARD, notification_check_interval=None)
    )
    assert text_of(result) == "pushed"
    # One tasks/get right after the subscription, none after: the frames did the rest.
    assert tasks.seen == ["tools/call", "subscriptions/listen", "tasks/get"]


async def test_notifications_carry_input_requests() -> None:
    tasks = ScriptedTasks(
        lambda get: {"status": "working"},
        frames=[asking("colour", ELICIT_REQUEST), asking("colour", ELICIT_REQUEST)],
        frames_after_update=[completed("green")],
    )
    elicit = Elicitations("green")
    result = await call(
        tasks, TasksClientExtension(timeout=GUARD, notification_check_interval=None), elicit=elicit
    )
    assert text_of(result) == "green"
    assert elicit.asked == ["Which colour?"]
    assert tasks.seen == ["tools/call", "subscriptions/listen", "tasks/get", "tasks/update"]


async def test_ended_stream_falls_back_to_polling() -> None:
    tasks = ScriptedTasks(after(4, completed("polled")), frames=[], end_stream=True)
    result = await call(
        tasks, TasksClientExtension(timeout=GUARD, notification_check_interval=None)
    )
    assert text_of(result) == "polled"
    assert tasks.seen.count("tasks/get") == 4


async def test_task_finished_before_the_subscription_is_seen_at_once() -> None:
    tasks = ScriptedTasks(after(1, completed("early")), frames=[])
    result = await call(
        tasks, TasksClientExtension(timeout=GUARD, notification_check_interval=None)
    )
    assert text_of(result) == "early"
    assert tasks.seen == ["tools/call", "subscriptions/listen", "tasks/get"]


async def test_silent_stream_is_checked_with_tasks_get() -> None:
    tasks = ScriptedTasks(after(3, completed("checked")), frames=[])
    result = await call(
        tasks, TasksClientExtension(timeout=GUARD, notification_check_interval=0.05)
    )
    assert text_of(result) == "checked"
    assert tasks.seen.count("tasks/get") == 3


# -- this library's server: examples/mcp_tasks_server.py ------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mcp_tasks_server.py"


@pytest.fixture
def example_url(redis_url: str, key_prefix: str) -> Iterator[str]:
    """examples/mcp_tasks_server.py on a loopback port, with two workers, on the suite's Redis."""
    port = free_port()
    command = [str(EXAMPLE), "--redis-url", redis_url, "--port", str(port)]
    with running([*command, "--workers", "2", "--prefix", key_prefix], port):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.mark.redis
async def test_example_server_task_resolves_through_notifications(
    example_url: str, wire: Wire
) -> None:
    tasks = TasksClientExtension(timeout=GUARD, notification_check_interval=None)
    async with Client(wire.client(example_url), extensions=[tasks]) as client:
        result = await client.call_tool("slow_square", {"n": 7})
    assert text_of(result) == "49"
    calls = [m for m in wire.seen[wire.seen.index("tools/call") :] if m != "tools/list"]
    assert calls == ["tools/call", "subscriptions/listen", "tasks/get"]


@pytest.mark.redis
async def test_example_server_input_and_result_come_through_notifications(
    example_url: str, wire: Wire
) -> None:
    # ask_name waits for its answer, so the task ends after the tasks/update: with a
    # single tasks/get, before it, the client can only have learnt the end from a frame.
    elicit = Elicitations("Ada")
    tasks = TasksClientExtension(timeout=GUARD, notification_check_interval=None)
    async with Client(
        wire.client(example_url), extensions=[tasks], elicitation_callback=elicit
    ) as client:
        result = await client.call_tool("ask_name", {})
    assert text_of(result) == "hello Ada"
    assert elicit.asked == ["What is your name?"]
    calls = [m for m in wire.seen[wire.seen.index("tools/call") :] if m != "tools/list"]
    assert calls == ["tools/call", "subscriptions/listen", "tasks/get", "tasks/update"]


@pytest.mark.redis
async def test_example_server_handle_waits_through_notifications(
    example_url: str, wire: Wire
) -> None:
    elicit = Elicitations("Grace")
    tasks = TasksClientExtension(notification_check_interval=None)
    async with Client(
        wire.client(example_url), extensions=[tasks], elicitation_callback=elicit
    ) as client:
        handle = await tasks.call_tool_task(client, "ask_name", {})
        state = await handle.wait(timeout=GUARD)
        assert state.status == "completed"
        assert text_of(await handle.result()) == "hello Grace"
    assert wire.seen.count("tasks/get") == 1
