"""End to end with the MCP SDK on both sides: two server processes, one Redis.

Each server is examples/mcp_sdk_server.py (streamable HTTP on its own loopback port)
with its tasks in the same Redis. A real ``ClientSession`` calls the task tool on
the first and follows the task, and fetches its result, through the second; a task
whose worker asks the client for input (elicitation, sampling) gets its answer
through the second too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp", reason="the MCP SDK is the `mcp` extra")

import mcp.client.streamable_http as transport
from mcp import ClientSession
from mcp.shared.context import RequestContext
from mcp.types import (
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    TextContent,
)

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "mcp_sdk_server.py"
WORKER = ROOT / "examples" / "mcp_tasks_worker.py"
SHORT_LEASE_MS = 1_000
GUARD = 60.0

# The newest 1.x SDKs mark their experimental tasks API as deprecated (it is what they have).
pytestmark = pytest.mark.filterwarnings(
    "ignore:The experimental tasks API is deprecated:DeprecationWarning"
)

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(
    command: list[str], port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (a Python script of this tree) in a process of its own.

    With ``port``, returns once the process listens on it. Stopped with SIGTERM
    at the end (SIGKILL if it does not stop). ``env`` is added to the environment.
    """
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen([sys.executable, *command], env=env)
    try:
        deadline = time.monotonic() + GUARD
        while port is not None:
            assert process.poll() is None, f"{command[0]} exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{command[0]} did not start"
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def mcp_server(redis_url: str, prefix: str) -> Iterator[str]:
    """Run the example server in a process of its own; yield its MCP endpoint URL."""
    port = free_port()
    command = [str(SERVER), "--port", str(port), "--redis-url", redis_url, "--prefix", prefix]
    with running(command, port):
        yield f"http://127.0.0.1:{port}/mcp"


def worker(redis_url: str, prefix: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A queue worker process of the examples (a short lease, frequent sweeps)."""
    command = [str(WORKER), "--redis-url", redis_url, "--prefix", prefix]
    return running([*command, "--lease-ms", str(SHORT_LEASE_MS), "--sweep-s", "0.5"])


class Answers:
    """A client's answers to the servers' questions, noting which connection each came on."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def on(self, connection: str) -> dict[str, Any]:
        """The ClientSession callbacks of ``connection``."""

        async def elicit(
            context: RequestContext[ClientSession, Any], params: ElicitRequestParams
        ) -> ElicitResult:
            self.asked.append((connection, params.message))
            return ElicitResult(action="accept", content={"name": "Ada"})

        async def sample(
            context: RequestContext[ClientSession, Any], params: CreateMessageRequestParams
        ) -> CreateMessageResult:
            content = params.messages[0].content
            self.asked.append(
                (connection, content.text if isinstance(content, TextContent) else "")
            )
            return CreateMessageResult(
                role="assistant",
                model="test-model",
                content=TextContent(type="text", text="Waves fold on the sand"),
            )

        return {"elicitation_callback": elicit, "sampling_callback": sample}


@asynccontextmanager
async def client(url: str, **callbacks: Any) -> AsyncIterator[ClientSession]:
    """A ClientSession connected to ``url`` over streamable HTTP."""
    connect = getattr(transport, "streamable_http_client", None) or transport.streamablehttp_client
    async with connect(url) as (read, write, _), ClientSession(read, write, **callbacks) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def two_servers(
    request: pytest.FixtureRequest, server_url: str, prefix: str, answers: Answers | None = None
) -> AsyncIterator[tuple[ClientSession, ClientSession, str]]:
    """Two server processes on one Redis, a client session on each, and the first's URL."""
    redis_url: str = request.getfixturevalue(server_url)
    first_callbacks = {} if answers is None else answers.on("first")
    second_callbacks = {} if answers is None else answers.on("second")
    with mcp_server(redis_url, prefix) as first_url, mcp_server(redis_url, prefix) as second_url:
        with anyio.fail_after(GUARD):
            async with (
                client(first_url, **first_callbacks) as first,
                client(second_url, **second_callbacks) as second,
            ):
                yield first, second, first_url


@pytest.mark.anyio
@pytest.mark.parametrize("server_url", SERVERS)
async def test_a_task_started_on_one_server_is_followed_and_fetched_on_another(
    request: pytest.FixtureRequest, server_url: str, key_prefix: str
) -> None:
    async with two_servers(request, server_url, key_prefix) as (first, second, first_url):
        created = await first.experimental.call_tool_as_task(
            "slow_echo", {"text": "hello", "seconds": 1.0}, ttl=60_000
        )
        task_id = created.task.taskId
        assert created.task.status == "working"
        assert created.task.ttl == 60_000

        seen = await second.experimental.get_task(task_id)  # at once, on the other
        assert seen.taskId == task_id
        assert seen.status in ("working", "completed")

        # tasks/result on the second blocks until the first's worker is done
        result = await second.experimental.get_task_result(task_id, CallToolResult)
        port = first_url.split(":")[2].split("/")[0]
        assert result.content == [TextContent(type="text", text=f"server-{port}: hello")]

        done = await second.experimental.get_task(task_id)
        assert done.status == "completed"
        assert done.statusMessage == "4 of 4 steps done"
        assert done.createdAt == created.task.createdAt
        again = await first.experimental.get_task(task_id)
        assert again.status == "completed"


@pytest.mark.anyio
@pytest.mark.parametrize("server_url", SERVERS)
async def test_a_task_cancelled_on_one_server_reads_cancelled_on_the_other(
    request: pytest.FixtureRequest, server_url: str, key_prefix: str
) -> None:
    async with two_servers(request, server_url, key_prefix) as (first, second, _):
        created = await first.experimental.call_tool_as_task(
            "slow_echo", {"text": "never", "seconds": 30.0}
        )
        task_id = created.task.taskId
        cancelled = await second.experimental.cancel_task(task_id)
        assert cancelled.status == "cancelled"
        seen = await first.experimental.get_task(task_id)
        assert seen.status == "cancelled"


@pytest.mark.anyio
@pytest.mark.parametrize("server_url", SERVERS)
async def test_a_task_asking_for_input_on_one_server_gets_the_answer_through_another(
    request: pytest.FixtureRequest, server_url: str, key_prefix: str
) -> None:
    answers = Answers()
    async with two_servers(request, server_url, key_prefix, answers) as (first, second, _):
        created = await first.experimental.call_tool_as_task("greet", {}, ttl=60_000)
        task_id = created.task.taskId

        # the worker on the first asks; tasks/result on the second delivers the question,
        # the client answers on that connection, and the worker gets the answer
        result = await second.experimental.get_task_result(task_id, CallToolResult)
        assert result.content == [TextContent(type="text", text="Hello, Ada!")]
        assert answers.asked == [("second", "Who is there?")]

        done = await first.experimental.get_task(task_id)
        assert done.status == "completed"


@pytest.mark.anyio
@pytest.mark.parametrize("server_url", SERVERS)
async def test_a_task_sampling_on_one_server_gets_the_model_reply_through_another(
    request: pytest.FixtureRequest, server_url: str, key_prefix: str
) -> None:
    answers = Answers()
    async with two_servers(request, server_url, key_prefix, answers) as (first, second, _):
        created = await first.experimental.call_tool_as_task("haiku", {"topic": "the tide"})
        task_id = created.task.taskId
        seen = []
        async for status in second.experimental.poll_task(task_id):  # followed on the second
            seen.append(status.status)
            if status.status == "input_required":
                break
        assert seen[-1] == "input_required"
        result = await second.experimental.get_task_result(task_id, CallToolResult)
        assert result.content == [TextContent(type="text", text="Waves fold on the sand")]
        assert answers.asked == [("second", "A haiku on the tide")]


@pytest.mark.anyio
@pytest.mark.parametrize("server_url", SERVERS)
async def test_a_task_asking_for_input_gets_the_answer_through_its_own_server_too(
    request: pytest.FixtureRequest, server_url: str, key_prefix: str
) -> None:
    answers = Answers()
    async with two_servers(request, server_url, key_prefix, answers) as (first, _, _):
        created = await first.experimental.call_tool_as_task("greet", {})
        result = await first.experimental.get_task_result(created.task.taskId, CallToolResult)
        assert result.content == [TextContent(type="text", text="Hello, Ada!")]
        assert answers.asked == [("first", "Who is there?")]


@pytest.mark.anyio
@pytest.mark.parametrize("server_url", SERVERS)
async def test_a_queued_task_whose_worker_is_killed_is_finished_by_another_worker(
    request: pytest.FixtureRequest, server_url: str, key_prefix: str
) -> None:
    redis_url: str = request.getfixturevalue(server_url)
    async with two_servers(request, server_url, key_prefix) as (first, second, _):
        with worker(redis_url, key_prefix) as doomed:
            created = await first.experimental.call_tool_as_task(
                "queued_echo", {"text": "survivor", "steps": 12, "step_seconds": 0.25}
            )
            task_id = created.task.taskId
            seen = await second.experimental.get_task(task_id)
            while not (seen.statusMessage or "").startswith("attempt 1"):
                assert seen.status == "working", seen  # the first worker is still to start
                await anyio.sleep(0.05)
                seen = await second.experimental.get_task(task_id)
            doomed.send_signal(signal.SIGKILL)  # its lease is left to expire
            doomed.wait()

        stalled = await second.experimental.get_task(task_id)
        assert stalled.status == "working"
        assert (stalled.statusMessage or "").startswith("attempt 1")

        with worker(redis_url, key_prefix):
            result = await second.experimental.get_task_result(task_id, CallToolResult)

        assert result.content == [TextContent(type="text", text="survivor")]
        assert result.structuredContent == {"attempt": 2}
        assert (await first.experimental.get_task(task_id)).status == "completed"
