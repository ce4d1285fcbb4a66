"""End to end with the MCP SDK on both sides: two server processes, one Redis.

Each server is examples/mcp_sdk_server.py (streamable HTTP on its own loopback port)
with its tasks in the same Redis. A real ``ClientSession`` calls the task tool on
the first and follows the task, and fetches its result, through the second; a task
whose worker asks the client for input (elicitation, sampling) gets its answer
through the second too.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.client.streamable_http as transport
import pytest
from mcp import ClientSession
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.context import RequestContext
from mcp.shared.exceptions import McpError
from mcp.types import (
    CallToolRequest,
    CallToolRequestParams,
    CallToolResult,
    ClientRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    TaskMetadata,
    TextContent,
)

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

SERVER = ROOT / "examples" / "mcp_sdk_server.py"

# The newest 1.x SDKs mark their experimental tasks API as deprecated (it is what they have).
pytestmark = [
    pytest.mark.slow,  # MCP servers in subprocesses, workers killed
    pytest.mark.filterwarnings(
        "ignore:The experimental tasks API is deprecated:DeprecationWarning"
    ),
]


@contextmanager
def mcp_server(redis_url: str, prefix: str, *options: str) -> Iterator[str]:
    """Run the example server in a process of its own; yield its MCP endpoint URL."""
    port = free_port()
    command = [str(SERVER), "--port", str(port), "--redis-url", redis_url, "--prefix", prefix]
    with tokens_env() as env, running([*command, *options], port, env):
        yield f"http://127.0.0.1:{port}/mcp"


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
async def client(url: str, token: str = ALICE, **callbacks: Any) -> AsyncIterator[ClientSession]:
    """A ClientSession connected to ``url`` over streamable HTTP, with a bearer token."""
    headers = {"Authorization": f"Bearer {token}"}
    async with AsyncExitStack() as stack:
        if hasattr(transport, "streamable_http_client"):  # newer 1.x: bring an httpx client
            http = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            connection = transport.streamable_http_client(url, http_client=http)
        else:
            connection = transport.streamablehttp_client(url, headers=headers)
        read, write, _ = await stack.enter_async_context(connection)
        session = await stack.enter_async_context(ClientSession(read, write, **callbacks))
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


# --- safe to copy: authentication, owners, limits ---------------------------------------------


INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.mark.redis
def test_the_sdk_server_answers_401_with_a_bearer_challenge_without_a_known_token(
    redis_url: str, key_prefix: str
) -> None:
    with mcp_server(redis_url, key_prefix) as mount, httpx.Client(timeout=GUARD) as http:
        url = mount + "/"  # the endpoint itself, not the redirect to it
        for token in [None, secrets.token_urlsafe(32), ALICE + "x", ALICE[:-1]]:
            headers = ACCEPT if token is None else {**ACCEPT, "Authorization": f"Bearer {token}"}
            response = http.post(url, json=INITIALIZE, headers=headers)
            assert response.status_code == 401, token
            assert response.headers["WWW-Authenticate"].startswith("Bearer "), token
        known = http.post(
            url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {BOB}"}
        )
        assert known.status_code == 200


@pytest.mark.redis
def test_the_sdk_server_refuses_a_body_above_its_limit_with_413(
    redis_url: str, key_prefix: str
) -> None:
    message = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * 64 * 1024}}
    body = json.dumps(message).encode()
    headers = {**ACCEPT, "Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}
    with mcp_server(redis_url, key_prefix) as mount, httpx.Client(timeout=GUARD) as http:
        url = mount + "/"  # the endpoint itself, not the redirect to it
        assert http.post(url, content=body, headers=headers).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        assert http.post(url, content=chunks(), headers=headers).status_code == 413
        assert http.post(url, json=INITIALIZE, headers=headers).status_code == 200


@pytest.mark.anyio
@pytest.mark.redis
async def test_with_the_sdk_client_another_owners_task_looks_missing(
    redis_url: str, key_prefix: str
) -> None:
    with mcp_server(redis_url, key_prefix) as url:
        with anyio.fail_after(GUARD):
            async with client(url, ALICE) as alice, client(url, BOB) as bob:
                created = await alice.experimental.call_tool_as_task(
                    "slow_echo", {"text": "mine", "seconds": 30.0}
                )
                task_id, missing = created.task.taskId, str(uuid.uuid4())

                async def refusal(session: ClientSession, method: str, task: str) -> str:
                    with pytest.raises(McpError) as refused:
                        if method == "get":
                            await session.experimental.get_task(task)
                        elif method == "result":
                            await session.experimental.get_task_result(task, CallToolResult)
                        else:
                            await session.experimental.cancel_task(task)
                    return refused.value.error.model_dump_json().replace(task, "<id>")

                for method in ("get", "result", "cancel"):
                    foreign = await refusal(bob, method, task_id)
                    assert foreign == await refusal(bob, method, missing), method
                listed = await bob.experimental.list_tasks()
                assert task_id not in [task.taskId for task in listed.tasks]

                assert (await alice.experimental.get_task(task_id)).status == "working"
                await alice.experimental.cancel_task(task_id)


@pytest.mark.anyio
@pytest.mark.redis
async def test_with_the_sdk_client_out_of_bounds_arguments_are_refused(
    redis_url: str, key_prefix: str
) -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("slow_echo", {"text": "x", "seconds": 1e9}),
        ("slow_echo", {"text": "x" * 1001}),
        ("slow_echo", {"text": "x", "other": 1}),
        ("queued_echo", {"text": "x", "steps": 1e9}),
        ("queued_echo", {"text": "x", "step_seconds": 1e9}),
        ("haiku", {"topic": "x" * 1001}),
    ]
    with mcp_server(redis_url, key_prefix) as url:
        with anyio.fail_after(GUARD):
            async with client(url, ALICE) as alice:
                for tool, arguments in bad:
                    call = CallToolRequest(
                        params=CallToolRequestParams(
                            name=tool, arguments=arguments, task=TaskMetadata(ttl=60_000)
                        )
                    )
                    result = await alice.send_request(ClientRequest(call), CallToolResult)
                    assert result.isError, (tool, arguments)
                assert (await alice.experimental.list_tasks()).tasks == []


@pytest.mark.anyio
@pytest.mark.redis
async def test_tasks_result_on_the_sdk_server_times_out_and_releases_its_subscription(
    redis_url: str, key_prefix: str
) -> None:
    with mcp_server(redis_url, key_prefix, "--wait-s", "1") as url:
        with anyio.fail_after(GUARD):
            async with client(url, ALICE) as alice:
                created = await alice.experimental.call_tool_as_task(
                    "slow_echo", {"text": "long", "seconds": 60.0}
                )
                started = time.monotonic()
                with pytest.raises(McpError) as refused:
                    await alice.experimental.get_task_result(created.task.taskId, CallToolResult)
                assert "did not end within 1 s" in refused.value.error.message
                assert time.monotonic() - started < GUARD / 2
                while subscribed_channels(redis_url, key_prefix):
                    await anyio.sleep(0.05)  # released (fail_after bounds it)
                await alice.experimental.cancel_task(created.task.taskId)


@pytest.mark.redis
def test_the_sdk_server_answers_malformed_and_deep_json_with_json_rpc_errors_never_500(
    redis_url: str, key_prefix: str
) -> None:
    headers = {**ACCEPT, "Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"}

    def call(params: str) -> str:
        return f'{{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {params}}}'

    cases = {
        "name as a list": call('{"name": ["slow_echo"]}'),
        "deeply nested JSON": call(
            '{"name": "slow_echo", "arguments": {"a": %s}}' % ("[" * 20_000 + "]" * 20_000)
        ),
        "nested deeper than allowed": call(
            '{"name": "slow_echo", "x": %s}' % ("[" * 40 + "]" * 40)
        ),
    }
    with mcp_server(redis_url, key_prefix) as mount, httpx.Client(timeout=GUARD) as http:
        url = mount + "/"
        opened = http.post(url, json=INITIALIZE, headers=headers)
        headers["mcp-session-id"] = opened.headers["mcp-session-id"]
        # the version the server agreed to (the oldest supported SDK may offer an older one)
        agreed = (
            opened.text.split("data: ", 1)[1] if opened.text.startswith("event:") else opened.text
        )
        headers["mcp-protocol-version"] = json.loads(agreed)["result"]["protocolVersion"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert http.post(url, json=initialized, headers=headers).status_code == 202
        for case, body in cases.items():
            response = http.post(url, content=body, headers=headers)
            assert response.status_code in (200, 400), (case, response.status_code)
            text = response.text
            data = text.split("data: ", 1)[1] if text.startswith("event:") else text
            reply = json.loads(data)
            assert reply["error"]["code"] in (-32700, -32602), (case, reply)


@pytest.mark.parametrize("tokens", UNUSABLE_TOKEN_MAPS)
def test_the_sdk_server_without_a_usable_token_map_says_so_in_one_line_and_exits_2(
    tokens: Any, tmp_path: Path
) -> None:
    assert_refuses_token_map(SERVER, tokens, tmp_path)
