"""The tasks extension (SEP-2663) on the wire: what tasks/get, tasks/update, tasks/cancel
and a task-creating tools/call answer, as JSON, on every backend. Needs no MCP SDK.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    InvalidArgument,
    InvalidTransition,
    TaskExpired,
    TaskNotFound,
    TaskStatus,
)
from taskstore_redis.mcp.protocol import (
    EXTENSION_ID,
    TasksProtocol,
    detailed_task,
    error_object,
)

StoreFactory = Callable[..., ts.GenericTaskStore]
GUARD = 30.0
OWNER = "alice"

TASK_KEYS = {"taskId", "status", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"}
ELICIT: dict[str, Any] = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Please enter your name.",
        "requestedSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}
TOOL_RESULT = {"content": [{"type": "text", "text": "sunny"}], "isError": False}
ACK = {"resultType": "complete"}


@pytest.fixture
def make(async_make_store: StoreFactory) -> Callable[..., TasksProtocol]:
    """Extensions on one shared storage of the parametrized backend (as separate processes)."""

    def build(owner: str = OWNER) -> TasksProtocol:
        return TasksProtocol(async_make_store(), owner)

    return build


def wire(value: dict[str, Any]) -> dict[str, Any]:
    """The value after a JSON round trip: what the client gets."""
    decoded: dict[str, Any] = json.loads(json.dumps(value))
    assert decoded == value
    return decoded


def iso(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_extension_identifier() -> None:
    assert EXTENSION_ID == "io.modelcontextprotocol/tasks"


# --- CreateTaskResult ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_create_result_is_flat_with_result_type_task_and_no_payload(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    record, created = await extension.create("tools/call", 60_000)
    created = wire(created)
    assert set(created) == {"resultType", *TASK_KEYS}
    assert created["resultType"] == "task"
    assert created["taskId"] == record.task.task_id
    assert created["status"] == "working"
    assert created["ttlMs"] == 60_000
    assert created["pollIntervalMs"] == 500
    assert iso(created["createdAt"]) == iso(created["lastUpdatedAt"])
    assert abs(iso(created["createdAt"]) - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.anyio
async def test_the_create_result_carries_a_status_message_when_given(
    make: Callable[..., TasksProtocol],
) -> None:
    _, created = await make().create(status_message="The operation is now in progress.")
    assert created["statusMessage"] == "The operation is now in progress."
    assert created["resultType"] == "task"


@pytest.mark.anyio
async def test_a_submitted_tool_call_is_a_task_a_queue_worker_runs_and_tasks_get_shows(
    make: Callable[..., TasksProtocol],
) -> None:
    server, other = make(), make()
    job = {"tool": "weather", "arguments": {"city": "Oslo"}}
    record, created = await server.submit(job, queue="tools", ttl_ms=60_000)
    created = wire(created)
    assert set(created) == {"resultType", *TASK_KEYS}
    assert created["resultType"] == "task" and created["status"] == "working"
    assert created["taskId"] == record.task.task_id and created["ttlMs"] == 60_000
    assert (await other.handle("tasks/get", {"taskId": created["taskId"]}))["status"] == "working"

    lease = await other.store.claim("tools", timeout=GUARD)
    assert lease is not None and lease.task_id == created["taskId"] and lease.params == job
    await lease.complete("completed", None, TOOL_RESULT)

    done = wire(await server.handle("tasks/get", {"taskId": created["taskId"]}))
    assert done["status"] == "completed" and done["result"] == TOOL_RESULT
    assert "params" not in done and "job" not in done


@pytest.mark.anyio
async def test_submit_refuses_params_that_are_not_plain_json_and_writes_nothing(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    with pytest.raises(InvalidArgument):
        await extension.submit({"not": {1, 2}}, queue="tools")
    assert await extension.store.claim("tools", timeout=0) is None
    assert (await extension.store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
async def test_once_the_create_result_exists_tasks_get_succeeds_from_any_process(
    make: Callable[..., TasksProtocol],
) -> None:
    creator, others = make(), [make() for _ in range(3)]
    for _ in range(5):
        _, created = await creator.create()
        for other in others:
            got = await other.get({"taskId": created["taskId"]})
            assert got["status"] == "working"
            assert got["createdAt"] == created["createdAt"]


@pytest.mark.anyio
async def test_a_task_without_ttl_says_ttl_ms_null(async_make_store: StoreFactory) -> None:
    extension = TasksProtocol(async_make_store(config=ts.StoreConfig(default_ttl_ms=None)), OWNER)
    _, created = await extension.create()
    assert created["ttlMs"] is None
    assert (await extension.get({"taskId": created["taskId"]}))["ttlMs"] is None


# --- tasks/get ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tasks_get_of_a_working_task_is_the_task_and_result_type_complete(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    _, created = await extension.create(ttl_ms=60_000)
    got = wire(await extension.handle("tasks/get", {"taskId": created["taskId"]}))
    assert set(got) == {"resultType", *TASK_KEYS}
    assert got == {**created, "resultType": "complete"}


@pytest.mark.anyio
async def test_tasks_get_of_a_completed_task_inlines_its_result(
    make: Callable[..., TasksProtocol],
) -> None:
    server, worker = make(), make()
    _, created = await server.create()
    await worker.complete(created["taskId"], TOOL_RESULT, "done")
    got = wire(await server.get({"taskId": created["taskId"]}))
    assert got["status"] == "completed"
    assert got["statusMessage"] == "done"
    assert got["result"] == TOOL_RESULT
    assert set(got) == {"resultType", "statusMessage", "result", *TASK_KEYS}
    assert iso(got["lastUpdatedAt"]) >= iso(got["createdAt"])


@pytest.mark.anyio
async def test_tasks_get_of_a_failed_task_inlines_its_json_rpc_error(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    _, created = await extension.create()
    error = {"code": -32603, "message": "upstream timed out", "data": {"after_s": 30}}
    await extension.fail(created["taskId"], error)
    got = wire(await extension.get({"taskId": created["taskId"]}))
    assert got["status"] == "failed"
    assert got["error"] == error
    assert "result" not in got


@pytest.mark.anyio
async def test_fail_needs_a_json_rpc_error_object(make: Callable[..., TasksProtocol]) -> None:
    extension = make()
    _, created = await extension.create()
    with pytest.raises(InvalidArgument):
        await extension.fail(created["taskId"], {"message": "no code"})
    assert (await extension.get({"taskId": created["taskId"]}))["status"] == "working"


@pytest.mark.anyio
async def test_tasks_get_of_a_cancelled_task_has_no_payload(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    _, created = await extension.create()
    assert await extension.cancel({"taskId": created["taskId"]}) == ACK
    got = await extension.get({"taskId": created["taskId"]})
    assert got["status"] == "cancelled"
    assert set(got) == {"resultType", *TASK_KEYS}


# --- input requests: tasks/get and tasks/update --------------------------------------------


@pytest.mark.anyio
async def test_tasks_get_of_a_task_waiting_for_input_lists_its_input_requests(
    make: Callable[..., TasksProtocol],
) -> None:
    server, worker = make(), make()
    _, created = await server.create()
    task_id = created["taskId"]
    await worker.request_input(task_id, {"name": ELICIT}, status_message="who are you?")
    got = wire(await server.get({"taskId": task_id}))
    assert got["status"] == "input_required"
    assert got["statusMessage"] == "who are you?"
    assert got["inputRequests"] == {"name": ELICIT}
    again = await server.get({"taskId": task_id})  # a poll before the answer: the same request
    assert again["inputRequests"] == {"name": ELICIT}


@pytest.mark.anyio
async def test_tasks_update_keeps_answers_and_a_partial_set_leaves_the_rest_outstanding(
    make: Callable[..., TasksProtocol],
) -> None:
    server, worker = make(), make()
    _, created = await server.create()
    task_id = created["taskId"]
    second = {**ELICIT, "params": {**ELICIT["params"], "message": "And your city?"}}
    await worker.request_input(task_id, {"name": ELICIT, "city": second})
    answer = {"action": "accept", "content": {"name": "Jane Doe"}}
    ack = await server.handle(
        "tasks/update", {"taskId": task_id, "inputResponses": {"name": answer}}
    )
    assert wire(ack) == ACK
    got = await server.get({"taskId": task_id})
    assert got["status"] == "input_required"
    assert got["inputRequests"] == {"city": second}
    city = {"action": "accept", "content": {"city": "Paris"}}
    await server.update({"taskId": task_id, "inputResponses": {"city": city}})
    with anyio.fail_after(GUARD):
        answers = await worker.wait_for_input(task_id)
    assert answers == {"name": answer, "city": city}
    resumed = await server.get({"taskId": task_id})
    assert resumed["status"] == "working"
    assert "inputRequests" not in resumed


@pytest.mark.anyio
async def test_tasks_update_ignores_answers_to_keys_not_outstanding(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    _, created = await extension.create()
    task_id = created["taskId"]
    await extension.request_input(task_id, {"name": ELICIT})
    first = {"action": "accept", "content": {"name": "Jane"}}
    await extension.update({"taskId": task_id, "inputResponses": {"name": first}})
    late = {"action": "accept", "content": {"name": "Someone else"}}
    ack = await extension.update(
        {"taskId": task_id, "inputResponses": {"name": late, "never-asked": late}}
    )
    assert ack == ACK
    assert await extension.wait_for_input(task_id, ["name"], timeout=GUARD) == {"name": first}
    record = await extension.store.get(task_id, owner_id=OWNER)
    assert not any("never-asked" in name for name in record.variables)


@pytest.mark.anyio
async def test_a_worker_waiting_for_input_wakes_when_another_process_gets_the_answer(
    make: Callable[..., TasksProtocol],
) -> None:
    server, worker = make(), make()
    _, created = await server.create()
    task_id = created["taskId"]
    await worker.request_input(task_id, {"name": ELICIT})
    got: list[dict[str, Any]] = []

    async def work() -> None:
        got.append(await worker.wait_for_input(task_id, ["name"], timeout=GUARD))

    answer = {"action": "accept", "content": {"name": "Jane"}}
    async with anyio.create_task_group() as group:
        group.start_soon(work)
        await anyio.sleep(0.05)
        assert got == []
        await server.update({"taskId": task_id, "inputResponses": {"name": answer}})
    assert got == [{"name": answer}]


@pytest.mark.anyio
async def test_an_input_request_key_is_used_once_in_a_tasks_life(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    _, created = await extension.create()
    task_id = created["taskId"]
    await extension.request_input(task_id, {"name": ELICIT})
    await extension.update({"taskId": task_id, "inputResponses": {"name": {"action": "decline"}}})
    await extension.wait_for_input(task_id, timeout=GUARD)
    with pytest.raises(InvalidArgument, match="already used"):
        await extension.request_input(task_id, {"name": ELICIT})


@pytest.mark.anyio
async def test_waiting_for_input_on_a_task_cancelled_meanwhile_raises(
    make: Callable[..., TasksProtocol],
) -> None:
    server, worker = make(), make()
    _, created = await server.create()
    task_id = created["taskId"]
    await worker.request_input(task_id, {"name": ELICIT})
    await server.cancel({"taskId": task_id})
    with pytest.raises(InvalidTransition):
        await worker.wait_for_input(task_id, timeout=GUARD)


# --- tasks/cancel -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tasks_cancel_of_a_finished_task_is_acknowledged_and_changes_nothing(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    _, created = await extension.create()
    await extension.complete(created["taskId"], TOOL_RESULT)
    before = await extension.get({"taskId": created["taskId"]})
    assert await extension.handle("tasks/cancel", {"taskId": created["taskId"]}) == ACK
    assert await extension.get({"taskId": created["taskId"]}) == before


# --- errors -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
async def test_an_unknown_task_is_an_invalid_params_error(
    make: Callable[..., TasksProtocol], method: str
) -> None:
    params = {"taskId": "786512e2-9e0d-44bd-8f29-789f320fe840", "inputResponses": {}}
    with pytest.raises(TaskNotFound) as raised:
        await make().handle(method, params)
    assert error_object(raised.value) == {
        "code": -32602,
        "message": "task not found: '786512e2-9e0d-44bd-8f29-789f320fe840'",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
async def test_a_task_of_another_owner_is_unknown(
    make: Callable[..., TasksProtocol], method: str
) -> None:
    _, created = await make("bob").create()
    with pytest.raises(TaskNotFound) as raised:
        await make().handle(method, {"taskId": created["taskId"], "inputResponses": {}})
    assert raised.value.code == -32602


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["tasks/get", "tasks/update", "tasks/cancel"])
async def test_an_expired_task_is_an_invalid_params_error(
    make: Callable[..., TasksProtocol], method: str
) -> None:
    extension = make()
    record, created = await extension.create(ttl_ms=200)
    assert record.expires_at is not None
    await anyio.sleep(max(0.0, (record.expires_at - datetime.now(UTC)).total_seconds()) + 0.05)
    with pytest.raises(TaskExpired) as raised:
        await extension.handle(method, {"taskId": created["taskId"], "inputResponses": {}})
    assert error_object(raised.value)["code"] == -32602


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tasks/get", None),
        ("tasks/get", {}),
        ("tasks/get", {"taskId": 7}),
        ("tasks/update", {"taskId": "t"}),
        ("tasks/update", {"taskId": "t", "inputResponses": []}),
        ("tasks/list", {}),
    ],
    ids=["no-params", "no-task-id", "int-task-id", "no-responses", "list-responses", "list"],
)
async def test_malformed_requests_are_invalid_params_errors(
    make: Callable[..., TasksProtocol], method: str, params: dict[str, Any] | None
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        await make().handle(method, params)
    assert error_object(raised.value)["code"] == -32602


def test_an_error_from_elsewhere_is_an_internal_error() -> None:
    assert error_object(RuntimeError("boom")) == {"code": -32603, "message": "boom"}


@pytest.mark.anyio
async def test_a_completed_task_without_a_result_still_carries_a_result_object(
    make: Callable[..., TasksProtocol],
) -> None:
    extension = make()
    record, _ = await extension.create()
    done = await extension.store.update_status(
        record.task.task_id, TaskStatus.COMPLETED, owner_id=OWNER
    )
    assert detailed_task(done)["result"] == {}
