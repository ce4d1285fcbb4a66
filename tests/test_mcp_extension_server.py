"""End to end: the tasks extension (SEP-2663) server, its workers and a raw JSON-RPC client.

The server is examples/mcp_extension_server.py (a Starlette JSON-RPC endpoint under
uvicorn, on its own loopback port); the tool calls run in worker processes
(examples/mcp_tasks_worker.py, ``run_worker`` on the work queue); all of them share
one real Redis. The client is httpx posting JSON-RPC requests, nothing more.

A worker killed (SIGKILL) mid-call leaves its task to the work queue: once the
lease expires another worker runs it again (attempt 2) and the client, polling
through a server process, gets that result.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the example server needs the `mcp` extra")
pytest.importorskip("uvicorn", reason="the example server needs the `mcp` extra")

import httpx

from tests.test_mcp_end_to_end import GUARD, ROOT, SERVERS, free_port, running, worker

SERVER = ROOT / "examples" / "mcp_extension_server.py"
EXTENSION = "io.modelcontextprotocol/tasks"
OPT_IN: dict[str, Any] = {
    "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXTENSION: {}}}
}
TASK_KEYS = {"taskId", "status", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"}

Task = dict[str, Any]


class Client:
    """A JSON-RPC client over HTTP: one POST per request."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=GUARD)
        self.ids = itertools.count(1)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole JSON-RPC response to one request."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self.ids), "method": method}
        if params is not None:
            message["params"] = params
        response = self.http.post(self.url, json=message)
        response.raise_for_status()
        reply: dict[str, Any] = response.json()
        assert reply["jsonrpc"] == "2.0" and reply["id"] == message["id"]
        return reply

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The result of a request that must succeed."""
        reply = self.send(method, params)
        assert "error" not in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def start(self, tool: str, **arguments: Any) -> Task:
        """Call a tool as a task (the extension declared on the request)."""
        return self.call("tools/call", {"name": tool, "arguments": arguments, "_meta": OPT_IN})

    def poll(self, task_id: str, until: Callable[[Task], bool]) -> Task:
        """``tasks/get`` at the task's poll interval until ``until`` holds."""
        deadline = time.monotonic() + GUARD
        while True:
            task = self.call("tasks/get", {"taskId": task_id})
            if until(task):
                return task
            assert time.monotonic() < deadline, f"the task never got there: {task}"
            time.sleep(min(task["pollIntervalMs"], 100) / 1000)


def ended(task: Task) -> bool:
    """Whether a polled task is terminal."""
    return task["status"] in ("completed", "failed", "cancelled")


@contextmanager
def server(redis_url: str, prefix: str) -> Iterator[Client]:
    """An extension server process; a client of it."""
    port = free_port()
    command = [str(SERVER), "--port", str(port), "--redis-url", redis_url, "--prefix", prefix]
    with running(command, port):
        client = Client(f"http://127.0.0.1:{port}/mcp")
        try:
            yield client
        finally:
            client.http.close()


@pytest.fixture(params=SERVERS)
def url(request: pytest.FixtureRequest) -> str:
    """The Redis (standalone or cluster) the processes share."""
    value: str = request.getfixturevalue(request.param)
    return value


def test_a_task_augmented_tool_call_returns_the_task_which_tasks_get_follows_to_its_result(
    url: str, key_prefix: str
) -> None:
    with server(url, key_prefix) as client, worker(url, key_prefix):
        created = client.start("slow_echo", text="hello", steps=3, step_seconds=0.1)
        assert created["resultType"] == "task" and created["status"] == "working"
        assert set(created) >= TASK_KEYS

        done = client.poll(created["taskId"], ended)

        assert done["resultType"] == "complete" and done["status"] == "completed", done
        assert done["result"]["content"] == [{"type": "text", "text": "hello"}]
        assert done["result"]["structuredContent"] == {"attempt": 1}


def test_a_client_without_the_extension_gets_the_tool_result_itself(
    url: str, key_prefix: str
) -> None:
    with server(url, key_prefix) as client, worker(url, key_prefix):
        arguments = {"text": "plain", "steps": 1, "step_seconds": 0}
        result = client.call("tools/call", {"name": "slow_echo", "arguments": arguments})

        assert "resultType" not in result and "taskId" not in result
        assert result["content"] == [{"type": "text", "text": "plain"}]


def test_a_task_asking_for_input_gets_it_through_tasks_update(url: str, key_prefix: str) -> None:
    with server(url, key_prefix) as client, worker(url, key_prefix):
        task_id = client.start("greet")["taskId"]

        asking = client.poll(task_id, lambda task: task["status"] == "input_required")
        assert set(asking["inputRequests"]) == {"name"}
        assert asking["inputRequests"]["name"]["method"] == "elicitation/create"
        answer = {"action": "accept", "content": {"name": "Ada"}}
        ack = client.call("tasks/update", {"taskId": task_id, "inputResponses": {"name": answer}})
        assert ack == {"resultType": "complete"}

        done = client.poll(task_id, ended)
        assert done["status"] == "completed" and "inputRequests" not in done
        assert done["result"]["content"] == [{"type": "text", "text": "Hello, Ada!"}]


def test_tasks_cancel_stops_a_running_task_for_good(url: str, key_prefix: str) -> None:
    with server(url, key_prefix) as client, worker(url, key_prefix):
        task_id = client.start("slow_echo", text="long", steps=600, step_seconds=0.1)["taskId"]
        client.poll(task_id, lambda task: "step" in task.get("statusMessage", ""))

        assert client.call("tasks/cancel", {"taskId": task_id}) == {"resultType": "complete"}

        cancelled = client.call("tasks/get", {"taskId": task_id})
        assert cancelled["status"] == "cancelled" and "result" not in cancelled
        # The worker's next fenced write finds the lease lost; the task stays cancelled.
        message = cancelled.get("statusMessage")
        time.sleep(0.5)
        after = client.call("tasks/get", {"taskId": task_id})
        assert after["status"] == "cancelled" and after.get("statusMessage") == message


def test_unknown_tasks_tools_and_methods_are_json_rpc_errors(url: str, key_prefix: str) -> None:
    with server(url, key_prefix) as client:
        unknown: list[tuple[str, dict[str, Any]]] = [
            ("tasks/get", {"taskId": "no-such-task"}),
            ("tasks/cancel", {"taskId": "no-such-task"}),
            ("tasks/update", {"taskId": "no-such-task", "inputResponses": {}}),
            ("tasks/get", {}),
            ("tools/call", {"name": "no_such_tool", "_meta": OPT_IN}),
        ]
        for method, params in unknown:
            reply = client.send(method, params)
            assert "result" not in reply and reply["error"]["code"] == -32602, (method, reply)
        assert client.send("tasks/result", {"taskId": "x"})["error"]["code"] == -32601
        capabilities = client.call("initialize", {"protocolVersion": "2025-11-25"})
        assert EXTENSION in capabilities["capabilities"]["extensions"]


def test_a_worker_killed_mid_task_leaves_it_to_another_worker_through_the_work_queue(
    url: str, key_prefix: str
) -> None:
    with server(url, key_prefix) as first, server(url, key_prefix) as second:
        with worker(url, key_prefix) as doomed:
            created = first.start("slow_echo", text="survivor", steps=12, step_seconds=0.25)
            task_id = created["taskId"]
            first.poll(task_id, lambda task: task.get("statusMessage", "").startswith("attempt 1"))
            doomed.send_signal(signal.SIGKILL)  # mid-task: the lease is left to expire
            doomed.wait()

        stalled = second.call("tasks/get", {"taskId": task_id})
        assert stalled["status"] == "working"
        assert stalled["statusMessage"].startswith("attempt 1")

        with worker(url, key_prefix):
            done = second.poll(task_id, ended)

        assert done["status"] == "completed"
        assert done["result"]["content"] == [{"type": "text", "text": "survivor"}]
        assert done["result"]["structuredContent"] == {"attempt": 2}
