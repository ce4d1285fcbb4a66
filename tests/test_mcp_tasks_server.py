"""End to end: examples/mcp_tasks_server.py (MCP SDK 2.x) in processes of its own, real clients.

Each server and worker is its own OS process sharing one real Redis (standalone and
cluster). The clients are FastMCP 4's own ``Client`` (with fastmcp-tasks' client
extension, which it registers on every client) and a raw JSON-RPC client (httpx).

- FastMCP's client gets ``slow_square(7) == 49`` and answers ``ask_name`` through its
  elicitation handler;
- ``tools/call`` on server A answers ``resultType: "task"``; ``tasks/get`` on server B
  returns the task completed, after a worker in a third process ran it;
- ``subscriptions/listen`` with ``taskIds`` on server B delivers ``notifications/tasks``
  for a change a worker process made;
- a worker killed (SIGKILL) mid-task: once its lease runs out another worker runs the
  call again and the client still gets its result;
- with ``--tokens``, one owner cannot see another's task, and a required tool refuses
  a client without the tasks capability (-32021).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastmcp", reason="the interop tests need the `test` extra")

import fastmcp_tasks  # registers its client extension on every FastMCP Client
from fastmcp import Client as FastMCPClient

from tests.example_servers import ALICE, BOB, ROOT, SERVERS, free_port, running

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

SERVER = ROOT / "examples" / "mcp_tasks_server.py"
EXTENSION = "io.modelcontextprotocol/tasks"
VERSION = "2026-07-28"
GUARD = 30.0
LEASE_MS = 1000


@pytest.fixture(params=SERVERS)
def url(request: pytest.FixtureRequest) -> str:
    """The Redis (standalone or cluster) the processes share."""
    found: str = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def prefix() -> str:
    return f"e{uuid.uuid4().hex[:10]}"


def process(
    url: str, prefix: str, *options: str, port: int | None = None
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The example in a process of its own; with ``port``, once it listens there."""
    command = [str(SERVER), "--redis-url", url, "--prefix", prefix, *options]
    return running([*command, "--port", str(port)] if port is not None else command, port)


@contextmanager
def server(url: str, prefix: str, *options: str) -> Iterator[str]:
    """An example server process; yields its MCP endpoint."""
    port = free_port()
    with process(url, prefix, *options, port=port):
        yield f"http://127.0.0.1:{port}/mcp"


def meta(tasks: bool = True) -> dict[str, Any]:
    capabilities: dict[str, Any] = {"extensions": {EXTENSION: {}}} if tasks else {}
    return {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }


class Raw:
    """A raw JSON-RPC client of one endpoint (2026-07-28 streamable HTTP)."""

    def __init__(self, endpoint: str, token: str | None = None, tasks: bool = True) -> None:
        self.endpoint = endpoint
        self.headers = {
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": VERSION,
        }
        if token is not None:
            self.headers["authorization"] = f"Bearer {token}"
        self.tasks = tasks

    def call(self, method: str, params: dict[str, Any], status: int = 200) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": method,
            "params": {**params, "_meta": meta(self.tasks)},
        }
        headers = {**self.headers, "mcp-method": method}
        if "name" in params:
            headers["mcp-name"] = params["name"]
        answer = httpx.post(self.endpoint, json=body, headers=headers, timeout=GUARD)
        if status != 200:
            assert answer.status_code == status, answer.text
            return {}
        reply: dict[str, Any] = answer.json()
        assert ("result" in reply) == (answer.status_code == 200), answer.text
        return reply

    def task(self, n: int, seconds: float = 0) -> str:
        reply = self.call(
            "tools/call", {"name": "slow_square", "arguments": {"n": n, "seconds": seconds}}
        )
        assert reply["result"]["resultType"] == "task", reply
        task_id: str = reply["result"]["taskId"]
        return task_id

    def get(self, task_id: str) -> dict[str, Any]:
        return self.call("tasks/get", {"taskId": task_id})

    def until(self, task_id: str, done: Any) -> dict[str, Any]:
        deadline = time.monotonic() + GUARD
        while True:
            reply = self.get(task_id)
            if done(reply["result"]):
                return reply["result"]  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"the task never got there: {reply}"
            time.sleep(0.05)


def fastmcp_client(endpoint: str, name: str = "Ada") -> FastMCPClient[Any]:
    """FastMCP's client, with fastmcp-tasks' client extension, answering elicitations."""
    assert fastmcp_tasks.__name__  # imported: the extension is on

    async def elicit(message: str, response_type: Any, params: Any, context: Any) -> Any:
        return {"name": name}

    return FastMCPClient(endpoint, elicitation_handler=elicit, timeout=GUARD)


async def test_fastmcp_client_gets_a_task_tools_result_and_answers_its_question(
    url: str, prefix: str
) -> None:
    with server(url, prefix, "--workers", "2") as endpoint:
        async with fastmcp_client(endpoint) as client:
            squared = await client.call_tool("slow_square", {"n": 7})
            greeted = await client.call_tool("ask_name", {})
    assert squared.structured_content == {"result": 49}
    assert greeted.structured_content == {"result": "hello Ada"}


def test_a_task_made_on_one_server_is_run_by_a_worker_process_and_read_on_another(
    url: str, prefix: str
) -> None:
    with server(url, prefix, "--workers", "0") as a, server(url, prefix, "--workers", "0") as b:
        task_id = Raw(a).task(7)
        assert Raw(b).get(task_id)["result"]["status"] == "working"  # no worker yet
        with process(url, prefix, "--worker-only", "--workers", "1"):
            done = Raw(b).until(task_id, lambda task: task["status"] == "completed")
    assert done["result"]["structuredContent"] == {"result": 49}
    assert done["result"]["isError"] is False


def test_notifications_tasks_reach_a_listener_on_another_server(url: str, prefix: str) -> None:
    with server(url, prefix, "--workers", "0") as a, server(url, prefix, "--workers", "0") as b:
        task_id = Raw(a).task(6)
        body = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "subscriptions/listen",
            "params": {"notifications": {"taskIds": [task_id, "no-such-task"]}, "_meta": meta()},
        }
        headers = {**Raw(b).headers, "mcp-method": "subscriptions/listen"}
        frames: list[dict[str, Any]] = []
        with httpx.stream("POST", b, json=body, headers=headers, timeout=GUARD) as stream:
            lines = stream.iter_lines()
            worker = None
            try:
                for line in lines:
                    if not line.startswith("data:"):
                        continue
                    frame = json.loads(line[5:])
                    frames.append(frame)
                    if frame["method"] == "notifications/subscriptions/acknowledged":
                        # the first change comes from a worker process started only now
                        worker = process(url, prefix, "--worker-only", "--workers", "1")
                        worker.__enter__()
                    if frame.get("params", {}).get("status") == "completed":
                        break
            finally:
                if worker is not None:
                    worker.__exit__(None, None, None)
    acknowledged, *notices = frames
    assert acknowledged["params"]["notifications"]["taskIds"] == [task_id]
    assert {notice["method"] for notice in notices} == {"notifications/tasks"}
    assert notices[0]["params"]["status"] == "working"
    assert notices[-1]["params"]["taskId"] == task_id
    assert notices[-1]["params"]["result"]["structuredContent"] == {"result": 36}
    assert notices[-1]["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": 9}


async def test_a_worker_killed_mid_task_leaves_it_to_another_and_the_client_gets_the_result(
    url: str, prefix: str
) -> None:
    lease = ["--lease-ms", str(LEASE_MS)]
    with server(url, prefix, "--workers", "0") as endpoint:
        raw = Raw(endpoint)
        task_id = raw.task(3, seconds=2)
        with process(url, prefix, "--worker-only", "--workers", "1", *lease) as first:
            raw.until(task_id, lambda task: task.get("statusMessage") == "0/1: sleeping")
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert raw.get(task_id)["result"]["status"] == "working"
        with process(url, prefix, "--worker-only", "--workers", "1", *lease):
            async with fastmcp_client(endpoint) as client:
                handle = await client.call_tool("slow_square", {"n": 4})
                done = raw.until(task_id, lambda task: task["status"] == "completed")
    assert handle.structured_content == {"result": 16}
    assert done["result"]["structuredContent"] == {"result": 9}


def test_owners_see_only_their_own_tasks_and_a_required_tool_needs_the_capability(
    url: str, prefix: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tokens = Path(folder) / "tokens.json"
        tokens.write_text(json.dumps({ALICE: "alice", BOB: "bob"}), encoding="utf-8")
        with server(url, prefix, "--workers", "1", "--tokens", str(tokens)) as endpoint:
            task_id = Raw(endpoint, ALICE).task(5)
            done = Raw(endpoint, ALICE).until(task_id, lambda task: task["status"] == "completed")
            foreign = Raw(endpoint, BOB).get(task_id)
            Raw(endpoint).call("tasks/get", {"taskId": task_id}, status=401)
            refused = Raw(endpoint, ALICE, tasks=False).call(
                "tools/call", {"name": "ask_name", "arguments": {}}
            )
            inline = Raw(endpoint, ALICE, tasks=False).call(
                "tools/call", {"name": "slow_square", "arguments": {"n": 8}}
            )
    assert done["result"]["structuredContent"] == {"result": 25}
    assert foreign["error"]["code"] == -32602
    assert refused["error"]["code"] == -32021
    assert refused["error"]["data"] == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}
    assert inline["result"]["structuredContent"] == {"result": 64}
    assert "resultType" not in inline["result"] or inline["result"]["resultType"] == "complete"


def test_the_worker_command_runs_the_task_tools_of_a_task_tools_object(
    url: str, prefix: str
) -> None:
    command = [sys.executable, "-m", "taskstore_redis", "worker", "mcp_tasks_server:tools"]
    where = ["--queue", "mcp-example", "--redis-url", url, "--prefix", prefix]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with server(url, prefix, "--workers", "0") as endpoint:
        task_id = Raw(endpoint).task(9)
        worker = subprocess.Popen([*command, *where], cwd=SERVER.parent, env=env)
        try:
            done = Raw(endpoint).until(task_id, lambda task: task["status"] == "completed")
        finally:
            worker.terminate()
            assert worker.wait(timeout=GUARD) == 0
    assert done["result"]["structuredContent"] == {"result": 81}
