"""End to end with the MCP SDK on both sides: two server processes, one Redis.

Each server is examples/mcp_sdk_server.py (streamable HTTP on its own loopback port)
with its tasks in the same Redis. A real ``ClientSession`` calls the task tool on
the first and follows the task, and fetches its result, through the second.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest

pytest.importorskip("mcp", reason="the MCP SDK is the `mcp` extra")

import mcp.client.streamable_http as transport
from mcp import ClientSession
from mcp.types import CallToolResult, TextContent

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "examples" / "mcp_sdk_server.py"
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
def mcp_server(redis_url: str, prefix: str) -> Iterator[str]:
    """Run the example server in a process of its own; yield its MCP endpoint URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(SERVER), "--port", str(port), "--redis-url", redis_url]
    process = subprocess.Popen([*command, "--prefix", prefix], env=env)
    try:
        deadline = time.monotonic() + GUARD
        while True:
            assert process.poll() is None, "the MCP server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def client(url: str) -> AsyncIterator[ClientSession]:
    """A ClientSession connected to ``url`` over streamable HTTP."""
    connect = getattr(transport, "streamable_http_client", None) or transport.streamablehttp_client
    async with connect(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def two_servers(
    request: pytest.FixtureRequest, server_url: str, prefix: str
) -> AsyncIterator[tuple[ClientSession, ClientSession, str]]:
    """Two server processes on one Redis, a client session on each, and the first's URL."""
    redis_url: str = request.getfixturevalue(server_url)
    with mcp_server(redis_url, prefix) as first_url, mcp_server(redis_url, prefix) as second_url:
        with anyio.fail_after(GUARD):
            async with client(first_url) as first, client(second_url) as second:
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
