"""End to end: the tasks extension (SEP-2663) server, its workers and a raw JSON-RPC client.

The server is examples/mcp_extension_server.py (a Starlette JSON-RPC endpoint under
uvicorn, on its own loopback port); the tool calls run in worker processes
(examples/mcp_tasks_worker.py, ``run_worker`` on the work queue); all of them share
one real Redis. The client is httpx posting JSON-RPC requests, nothing more.

A worker killed (SIGKILL) mid-call leaves its task to the work queue: once the
lease expires another worker runs it again (attempt 2) and the client, polling
through a server process, gets that result.

The server is one that is safe to copy: bearer tokens stand for owners (401
without one), each owner sees its own tasks and has its own quota, bodies are
bounded (413), malformed requests are JSON-RPC errors (never HTTP 500), tool
arguments are bounded, and a blocking wait ends (timeout, client gone) with its
task cancelled and its subscription released, as Redis itself shows.
"""

from __future__ import annotations

import itertools
import json
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the example server needs the `mcp` extra")
pytest.importorskip("uvicorn", reason="the example server needs the `mcp` extra")

import httpx

import taskstore_redis as ts
from tests.example_servers import (
    ALICE,
    BOB,
    GUARD,
    ROOT,
    SERVERS,
    UNUSABLE_TOKEN_MAPS,
    assert_refuses_token_map,
    free_port,
    running,
    subscribed_channels,
    tokens_env,
    worker,
)

pytestmark = pytest.mark.slow  # example servers in subprocesses, workers killed

SERVER = ROOT / "examples" / "mcp_extension_server.py"
EXTENSION = "io.modelcontextprotocol/tasks"
OPT_IN: dict[str, Any] = {
    "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXTENSION: {}}}
}
TASK_KEYS = {"taskId", "status", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"}
MAX_BODY = 64 * 1024

Task = dict[str, Any]


class Client:
    """A JSON-RPC client over HTTP: one POST per request."""

    def __init__(self, url: str, token: str = ALICE) -> None:
        self.url = url
        self.http = httpx.Client(timeout=GUARD, headers={"Authorization": f"Bearer {token}"})
        self.ids = itertools.count(1)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def post(self, content: bytes | str) -> dict[str, Any]:
        """The JSON-RPC reply to a raw body: HTTP 200, whatever the body."""
        response = self.http.post(self.url, content=content)
        assert response.status_code == 200, (response.status_code, response.text[:200])
        reply: dict[str, Any] = response.json()
        assert reply["jsonrpc"] == "2.0"
        return reply

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
def server(redis_url: str, prefix: str, *options: str) -> Iterator[Client]:
    """An extension server process knowing TOKENS (from its env); alice's client of it."""
    port = free_port()
    command = [str(SERVER), "--port", str(port), "--redis-url", redis_url, "--prefix", prefix]
    with tokens_env() as env, running([*command, *options], port, env):
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
        task_id = client.start("slow_echo", text="long", steps=100, step_seconds=0.5)["taskId"]
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


# --- safe to copy: authentication, owners, limits ---------------------------------------------


def _tasks_of(redis_url: str, prefix: str, owner: str) -> list[ts.TaskRecord]:
    with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as store:
        return store.list(owner_id=owner).tasks


def _eventually(check: Callable[[], bool], what: str, within: float = GUARD) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.redis
def test_a_request_without_a_known_bearer_token_is_401_with_a_bearer_challenge(
    redis_url: str, key_prefix: str
) -> None:
    with server(redis_url, key_prefix) as client:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        wrong = [
            {},
            {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
            {"Authorization": f"Bearer {ALICE}x"},
            {"Authorization": f"Bearer {ALICE[:-1]}"},
            {"Authorization": f"Basic {ALICE}"},
            {"Authorization": "Bearer"},
        ]
        for headers in wrong:
            response = httpx.post(client.url, json=ping, headers=headers, timeout=GUARD)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"].startswith("Bearer "), headers
        assert client.call("ping") == {}
        with Client(client.url, BOB) as bob:
            assert bob.call("ping") == {}


@pytest.mark.redis
def test_another_owners_task_is_answered_exactly_as_a_missing_one(
    redis_url: str, key_prefix: str
) -> None:
    with server(redis_url, key_prefix) as alice, Client(alice.url, BOB) as bob:
        task_id = alice.start("slow_echo", text="mine", steps=1, step_seconds=0)["taskId"]
        missing = str(uuid.uuid4())

        for method, extra in [
            ("tasks/get", {}),
            ("tasks/update", {"inputResponses": {"name": {"action": "accept"}}}),
            ("tasks/cancel", {}),
        ]:
            foreign = bob.send(method, {"taskId": task_id, **extra})
            unknown = bob.send(method, {"taskId": missing, **extra})
            assert "result" not in foreign, (method, foreign)
            assert foreign["error"]["code"] == -32602
            seen = json.dumps(foreign["error"]).replace(task_id, "<id>")
            assert seen == json.dumps(unknown["error"]).replace(missing, "<id>"), method

        assert alice.call("tasks/get", {"taskId": task_id})["status"] == "working"


@pytest.mark.redis
def test_each_owner_has_a_quota_of_its_own(redis_url: str, key_prefix: str) -> None:
    with server(redis_url, key_prefix) as alice, Client(alice.url, BOB) as bob:
        arguments = {"name": "slow_echo", "arguments": {"text": "x"}, "_meta": OPT_IN}
        replies = [alice.send("tools/call", arguments) for _ in range(101)]
        assert all("result" in reply for reply in replies[:100])
        assert "maximum of 100" in replies[100]["error"]["message"]

        assert bob.call("tools/call", arguments)["status"] == "working"


@pytest.mark.redis
def test_a_body_above_the_limit_is_413_declared_or_chunked(redis_url: str, key_prefix: str) -> None:
    with server(redis_url, key_prefix) as client:
        text = "x" * MAX_BODY
        message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "slow_echo", "arguments": {"text": text}, "_meta": OPT_IN},
        }
        body = json.dumps(message).encode()
        assert client.http.post(client.url, content=body).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        assert client.http.post(client.url, content=chunks()).status_code == 413
        assert client.call("ping") == {}
        assert _tasks_of(redis_url, key_prefix, "alice") == []


@pytest.mark.redis
def test_malformed_requests_and_deep_json_are_json_rpc_errors_never_http_500(
    redis_url: str, key_prefix: str
) -> None:
    def request(params: Any, method: str = "tools/call") -> str:
        return json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})

    deep = "[" * 20_000 + "]" * 20_000
    nested: Any = "x"
    for _ in range(40):
        nested = [nested]
    cases: dict[str, tuple[bytes | str, int]] = {
        "name as a list": (request({"name": ["slow_echo"]}), -32602),
        "name as an object": (request({"name": {"a": 1}, "_meta": OPT_IN}), -32602),
        "arguments as a list": (request({"name": "slow_echo", "arguments": [1]}), -32602),
        "params as a list": (request(["slow_echo"]), -32602),
        "taskId as a list": (request({"taskId": ["x"]}, "tasks/get"), -32602),
        "inputResponses as a list": (
            request({"taskId": "x", "inputResponses": []}, "tasks/update"),
            -32602,
        ),
        "deeply nested JSON": (
            '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow_echo",'
            f' "arguments": {{"text": "x", "deep": {deep}}}}}}}',
            -32700,
        ),
        "nested deeper than allowed": (request({"name": "slow_echo", "x": nested}), -32600),
        "NaN": (
            request({"name": "slow_echo", "arguments": {"text": "x", "steps": "NaN"}}).replace(
                '"NaN"', "NaN"
            ),
            -32700,
        ),
        "not UTF-8": (b'{"jsonrpc": "2.0", "id": 7, "method": "\xff"}', -32700),
        "a batch": (json.dumps([{"jsonrpc": "2.0", "id": 7, "method": "ping"}]), -32600),
        "id as an object": ('{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', -32600),
        "no method": ('{"jsonrpc": "2.0", "id": 7}', -32600),
    }
    with server(redis_url, key_prefix) as client:
        for case, (body, code) in cases.items():
            reply = client.post(body)
            assert "result" not in reply, case
            assert reply["error"]["code"] == code, (case, reply)
        assert client.call("ping") == {}
        assert _tasks_of(redis_url, key_prefix, "alice") == []


@pytest.mark.redis
def test_tool_arguments_out_of_bounds_are_invalid_params_and_queue_nothing(
    redis_url: str, key_prefix: str
) -> None:
    bad: list[dict[str, Any]] = [
        {"text": "x", "steps": 1e9},
        {"text": "x", "steps": 10**30},
        {"text": "x", "steps": -1},
        {"text": "x", "steps": 2.5},
        {"text": "x", "steps": True},
        {"text": "x", "step_seconds": 1e9},
        {"text": "x", "step_seconds": "1"},
        {"text": "x" * 1001},
        {"text": 5},
        {},
        {"text": "x", "unknown": 1},
    ]
    with server(redis_url, key_prefix) as client:
        for arguments in bad:
            for meta in ({"_meta": OPT_IN}, {}):
                reply = client.send(
                    "tools/call", {"name": "slow_echo", "arguments": arguments, **meta}
                )
                assert "result" not in reply, arguments
                assert reply["error"]["code"] == -32602, (arguments, reply)
        reply = client.send("tools/call", {"name": "greet", "arguments": {"who": "x"}})
        assert reply["error"]["code"] == -32602
        assert _tasks_of(redis_url, key_prefix, "alice") == []
        bounds = client.call("tools/list")["tools"][0]["inputSchema"]["properties"]
        assert bounds["steps"]["maximum"] == 100


@pytest.mark.redis
def test_a_blocking_tool_call_times_out_cancels_its_task_and_releases_its_subscription(
    redis_url: str, key_prefix: str
) -> None:
    with server(redis_url, key_prefix, "--wait-s", "1") as client:  # no worker: it never ends
        started = time.monotonic()
        reply = client.send("tools/call", {"name": "slow_echo", "arguments": {"text": "x"}})

        assert time.monotonic() - started < GUARD / 2
        assert "result" not in reply and reply["error"]["code"] == -32603
        assert "did not end within 1 s" in reply["error"]["message"]
        [task] = _tasks_of(redis_url, key_prefix, "alice")
        assert task.task.status.value == "cancelled"
        _eventually(lambda: subscribed_channels(redis_url, key_prefix) == [], "still subscribed")


@pytest.mark.redis
def test_an_abandoned_tool_call_cancels_its_task_and_releases_its_subscription(
    redis_url: str, key_prefix: str
) -> None:
    with server(redis_url, key_prefix, "--wait-s", "600") as client:  # no worker
        port = int(client.url.split(":")[2].split("/")[0])
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "slow_echo", "arguments": {"text": "x"}},
            }
        ).encode()
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {ALICE}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as connection:
            connection.sendall(head.encode() + body)
            _eventually(
                lambda: len(subscribed_channels(redis_url, key_prefix)) == 1, "never waited"
            )
        # the client is gone, long before the wait would time out

        _eventually(
            lambda: subscribed_channels(redis_url, key_prefix) == [], "still subscribed", 20
        )
        _eventually(
            lambda: _tasks_of(redis_url, key_prefix, "alice")[0].task.status.value == "cancelled",
            "the abandoned task was not cancelled",
            20,
        )


@pytest.mark.parametrize("tokens", UNUSABLE_TOKEN_MAPS)
def test_a_server_without_a_usable_token_map_says_so_in_one_line_and_exits_2(
    tokens: Any, tmp_path: Path
) -> None:
    assert_refuses_token_map(SERVER, tokens, tmp_path)
