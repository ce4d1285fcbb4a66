"""RedisTaskMessageQueue, the MCP SDK's TaskMessageQueue, on every backend.

The first part is what the SDK's own tests (tests/experimental/tasks/test_message_queue.py
and server/test_task_result_handler.py of python-sdk 1.23 to 1.x) expect of a message
queue, rewritten for this one (its messages belong to a task, so the task is created
first); the second is what a queue shared by several processes adds: a request queued
by a worker in one process is delivered by another, and the client's answer (or
error) reaches the worker; each message is taken once; a worker whose task ends
does not wait forever. Two queues on two stores over one storage stand for two
processes: an SDK ``Resolver`` never crosses from one to the other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from unittest.mock import AsyncMock, Mock

import anyio
import pytest
from mcp.server.experimental.task_result_handler import TaskResultHandler
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.message_queue import QueuedMessage
from mcp.shared.experimental.tasks.message_queue import TaskMessageQueue as SdkTaskMessageQueue
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    CallToolResult,
    ErrorData,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
    JSONRPCNotification,
    JSONRPCRequest,
    TaskMetadata,
    TextContent,
)

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import StoreConfig
from taskstore_redis.mcp1 import AnswerForwarder, RedisTaskMessageQueue, RedisTaskStore

StoreFactory = Callable[..., ts.GenericTaskStore]
GUARD = 30.0
"""A timeout only a lost wakeup reaches."""
MINUTE = TaskMetadata(ttl=60_000)

Node = tuple[RedisTaskStore, RedisTaskMessageQueue]


@pytest.fixture
async def make(async_make_store: StoreFactory) -> AsyncIterator[Callable[..., Node]]:
    """Build (store, queue) pairs on one storage of the parametrized backend (as processes)."""
    queues: list[RedisTaskMessageQueue] = []

    def build(owner: str = "server", config: StoreConfig | None = None) -> Node:
        store = RedisTaskStore(async_make_store(config=config), owner)
        queue = RedisTaskMessageQueue(store)
        queues.append(queue)
        return store, queue

    yield build
    for queue in queues:
        await queue.aclose()


@pytest.fixture
def node(make: Callable[..., Node]) -> Node:
    return make()


@pytest.fixture
def queue(node: Node) -> RedisTaskMessageQueue:
    return node[1]


@pytest.fixture
async def tasks(node: Node) -> RedisTaskStore:
    store = node[0]
    for task_id in ("task-1", "task-2"):
        await store.create_task(MINUTE, task_id=task_id)
    return store


def make_request(id: int | str = 1, method: str = "test/method") -> JSONRPCRequest:
    return JSONRPCRequest(jsonrpc="2.0", id=id, method=method)


def make_notification(method: str = "test/notify") -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method=method)


def request_message(id: int | str = 1, method: str = "test/method") -> QueuedMessage:
    return QueuedMessage(type="request", message=make_request(id, method))


# --- what the SDK's tests expect of a TaskMessageQueue ---------------------------------------


@pytest.mark.anyio
async def test_it_is_an_sdk_task_message_queue(queue: RedisTaskMessageQueue) -> None:
    assert isinstance(queue, SdkTaskMessageQueue)


@pytest.mark.anyio
async def test_enqueue_and_dequeue(tasks: RedisTaskStore, queue: RedisTaskMessageQueue) -> None:
    await queue.enqueue("task-1", request_message())
    result = await queue.dequeue("task-1")
    assert result is not None
    assert result.type == "request"
    assert isinstance(result.message, JSONRPCRequest)
    assert result.message.method == "test/method"
    assert result.message.id == 1


@pytest.mark.anyio
async def test_dequeue_empty_returns_none(queue: RedisTaskMessageQueue) -> None:
    assert await queue.dequeue("nonexistent-task") is None


@pytest.mark.anyio
async def test_dequeue_of_a_task_without_messages_returns_none(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    assert await queue.dequeue("task-1") is None


@pytest.mark.anyio
async def test_fifo_ordering(tasks: RedisTaskStore, queue: RedisTaskMessageQueue) -> None:
    for number, method in enumerate(["first", "second", "third"], start=1):
        await queue.enqueue("task-1", request_message(number, method))
    methods = []
    for _ in range(3):
        message = await queue.dequeue("task-1")
        assert message is not None
        methods.append(message.message.method)
    assert methods == ["first", "second", "third"]
    assert await queue.dequeue("task-1") is None


@pytest.mark.anyio
async def test_fifo_ordering_holds_past_nine_messages(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    for number in range(12):
        await queue.enqueue("task-1", request_message(number, f"m{number}"))
    taken = [await queue.dequeue("task-1") for _ in range(12)]
    assert [m.message.method for m in taken if m is not None] == [f"m{n}" for n in range(12)]


@pytest.mark.anyio
async def test_separate_queues_per_task(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    await queue.enqueue("task-1", request_message(1, "task1-msg"))
    await queue.enqueue("task-2", request_message(2, "task2-msg"))
    first = await queue.dequeue("task-1")
    second = await queue.dequeue("task-2")
    assert first is not None and first.message.method == "task1-msg"
    assert second is not None and second.message.method == "task2-msg"


@pytest.mark.anyio
async def test_peek_does_not_remove(tasks: RedisTaskStore, queue: RedisTaskMessageQueue) -> None:
    await queue.enqueue("task-1", request_message())
    peeked = await queue.peek("task-1")
    dequeued = await queue.dequeue("task-1")
    assert peeked is not None and dequeued is not None
    assert isinstance(peeked.message, JSONRPCRequest)
    assert isinstance(dequeued.message, JSONRPCRequest)
    assert peeked.message.id == dequeued.message.id


@pytest.mark.anyio
async def test_peek_empty_queue_returns_none(queue: RedisTaskMessageQueue) -> None:
    assert await queue.peek("nonexistent-task") is None


@pytest.mark.anyio
async def test_is_empty(tasks: RedisTaskStore, queue: RedisTaskMessageQueue) -> None:
    assert await queue.is_empty("task-1") is True
    await queue.enqueue("task-1", QueuedMessage(type="notification", message=make_notification()))
    assert await queue.is_empty("task-1") is False
    await queue.dequeue("task-1")
    assert await queue.is_empty("task-1") is True


@pytest.mark.anyio
async def test_clear_returns_all_messages(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    for number in (1, 2, 3):
        await queue.enqueue("task-1", request_message(number))
    messages = await queue.clear("task-1")
    assert [m.message.id for m in messages if isinstance(m.message, JSONRPCRequest)] == [1, 2, 3]
    assert await queue.is_empty("task-1") is True
    assert await queue.clear("task-1") == []


@pytest.mark.anyio
async def test_clear_empty_queue(queue: RedisTaskMessageQueue) -> None:
    assert await queue.clear("nonexistent") == []


@pytest.mark.anyio
async def test_notification_messages(tasks: RedisTaskStore, queue: RedisTaskMessageQueue) -> None:
    message = QueuedMessage(type="notification", message=make_notification("log/message"))
    await queue.enqueue("task-1", message)
    result = await queue.dequeue("task-1")
    assert result is not None
    assert result.type == "notification"
    assert isinstance(result.message, JSONRPCNotification)
    assert result.message.method == "log/message"
    assert result.resolver is None


@pytest.mark.anyio
async def test_a_message_comes_back_as_it_was_queued(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    request = JSONRPCRequest(
        jsonrpc="2.0",
        id="task-task-1-7",
        method="elicitation/create",
        params={"message": "Name?", "requestedSchema": {"type": "object", "properties": {}}},
    )
    # the SDK's own tests queue a request under type "notification": both are kept
    sent = QueuedMessage(type="notification", message=request, original_request_id="r-1")
    await queue.enqueue("task-1", sent)
    got = await queue.dequeue("task-1")
    assert got is not None
    assert got.type == "notification"
    assert got.message == request
    assert got.timestamp == sent.timestamp
    assert got.original_request_id == "r-1"


@pytest.mark.anyio
async def test_message_timestamp(queue: RedisTaskMessageQueue) -> None:
    before = datetime.now(UTC)
    message = QueuedMessage(type="request", message=make_request())
    after = datetime.now(UTC)
    assert before <= message.timestamp <= after


@pytest.mark.anyio
async def test_message_with_resolver(tasks: RedisTaskStore, queue: RedisTaskMessageQueue) -> None:
    """Taken through the queue that queued it, a request keeps its very resolver."""
    resolver: Resolver[dict[str, Any]] = Resolver()
    message = QueuedMessage(
        type="request", message=make_request(), resolver=resolver, original_request_id=42
    )
    await queue.enqueue("task-1", message)
    result = await queue.dequeue("task-1")
    assert result is not None
    assert result.resolver is resolver
    assert result.original_request_id == 42


@pytest.mark.anyio
async def test_wait_for_message_returns_immediately_if_message_exists(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    await queue.enqueue("task-1", request_message())
    with anyio.fail_after(GUARD):
        await queue.wait_for_message("task-1")


async def wait_ends_only_after_the_last(
    queue: RedisTaskMessageQueue, *nudges: Callable[[], Awaitable[Any]]
) -> None:
    """Run each nudge while ``wait_for_message("task-1")`` waits: it ends after the last only."""
    received = anyio.Event()

    async def wait() -> None:
        await queue.wait_for_message("task-1")
        received.set()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            for nudge in nudges:
                await anyio.sleep(0.05)
                assert not received.is_set()
                await nudge()
    assert received.is_set()


@pytest.mark.anyio
async def test_wait_for_message_blocks_until_message(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    await wait_ends_only_after_the_last(queue, lambda: queue.enqueue("task-1", request_message()))


@pytest.mark.anyio
async def test_notify_message_available_wakes_waiter(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    await wait_ends_only_after_the_last(queue, lambda: queue.notify_message_available("task-1"))
    assert await queue.is_empty("task-1")


@pytest.mark.anyio
async def test_a_change_that_is_not_a_message_does_not_end_wait_for_message(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    await wait_ends_only_after_the_last(
        queue,
        lambda: tasks.update_task("task-1", status_message="step 2"),
        lambda: queue.enqueue("task-1", request_message()),
    )


@pytest.mark.anyio
async def test_enqueue_on_a_missing_task_raises_and_writes_nothing(
    queue: RedisTaskMessageQueue,
) -> None:
    with pytest.raises(ValueError, match="not found"):
        await queue.enqueue("nonexistent", request_message())
    assert await queue.is_empty("nonexistent")


@pytest.mark.anyio
async def test_wait_for_message_on_a_missing_task_raises(queue: RedisTaskMessageQueue) -> None:
    with pytest.raises(ValueError, match="not found"):
        await queue.wait_for_message("nonexistent")


@pytest.mark.anyio
async def test_a_message_too_large_for_the_store_raises_and_is_not_queued(
    make: Callable[..., Node],
) -> None:
    store, queue = make(config=StoreConfig(max_string_length=200))
    await store.create_task(MINUTE, task_id="task-1")
    big = JSONRPCRequest(jsonrpc="2.0", id=1, method="x", params={"text": "a" * 500})
    with pytest.raises(ValueError):
        await queue.enqueue("task-1", QueuedMessage(type="request", message=big))
    assert await queue.is_empty("task-1")


@pytest.mark.anyio
async def test_messages_belong_to_their_owner(make: Callable[..., Node]) -> None:
    (alice_store, alice), (_, bob) = make("alice"), make("bob")
    await alice_store.create_task(MINUTE, task_id="task-1")
    await alice.enqueue("task-1", request_message())
    assert await bob.dequeue("task-1") is None
    with pytest.raises(ValueError, match="not found"):
        await bob.enqueue("task-1", request_message())
    assert await alice.dequeue("task-1") is not None


@pytest.mark.anyio
async def test_messages_go_with_their_task(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    await queue.enqueue("task-1", request_message())
    assert await tasks.delete_task("task-1")
    assert await queue.is_empty("task-1")
    assert await queue.dequeue("task-1") is None


# --- what the SDK's TaskResultHandler expects of the queue -----------------------------------


def mock_session(sent: list[SessionMessage]) -> Mock:
    session = Mock()

    async def send(message: SessionMessage) -> None:
        sent.append(message)

    session.send_message = send
    return session


@pytest.mark.anyio
async def test_handler_delivers_queued_messages_before_returning_the_result(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    handler = TaskResultHandler(tasks, queue)
    await queue.enqueue(
        "task-1",
        QueuedMessage(type="notification", message=make_notification("notifications/message")),
    )
    await tasks.store_result(
        "task-1", CallToolResult(content=[TextContent(type="text", text="ok")])
    )
    await tasks.update_task("task-1", status="completed")
    sent: list[SessionMessage] = []
    request = GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(taskId="task-1"))
    with anyio.fail_after(GUARD):
        response = await handler.handle(request, mock_session(sent), "req-1")
    assert [m.message.root.method for m in sent] == ["notifications/message"]  # type: ignore[union-attr]
    assert response.meta is not None
    assert "io.modelcontextprotocol/related-task" in response.meta


@pytest.mark.anyio
async def test_handler_delivers_a_message_queued_while_it_waits(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    handler = TaskResultHandler(tasks, queue)
    sent: list[SessionMessage] = []
    request = GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(taskId="task-1"))

    async def worker() -> None:
        await anyio.sleep(0.05)
        await queue.enqueue("task-1", request_message("late", "late/request"))
        while not sent:
            await anyio.sleep(0.01)
        await tasks.update_task("task-1", status="completed")

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(worker)
            await handler.handle(request, mock_session(sent), "req-1")
    assert [m.message.root.method for m in sent] == ["late/request"]  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_deliver_registers_resolver_for_request_messages(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    handler = TaskResultHandler(tasks, queue)
    resolver: Resolver[dict[str, Any]] = Resolver()
    await queue.enqueue(
        "task-1",
        QueuedMessage(
            type="request",
            message=make_request("inner-req-1", "elicitation/create"),
            resolver=resolver,
            original_request_id="inner-req-1",
        ),
    )
    session = Mock()
    session.send_message = AsyncMock()
    await handler._deliver_queued_messages("task-1", session, "outer-req-1")
    assert handler._pending_requests["inner-req-1"] is resolver
    assert handler.route_response("inner-req-1", {"action": "accept"})
    with anyio.fail_after(GUARD):
        assert await resolver.wait() == {"action": "accept"}


@pytest.mark.anyio
async def test_deliver_skips_resolver_registration_when_no_original_id(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    handler = TaskResultHandler(tasks, queue)
    await queue.enqueue(
        "task-1",
        QueuedMessage(
            type="request",
            message=make_request("inner-req-1", "elicitation/create"),
            resolver=Resolver(),
            original_request_id=None,
        ),
    )
    session = Mock()
    session.send_message = AsyncMock()
    await handler._deliver_queued_messages("task-1", session, "outer-req-1")
    assert len(handler._pending_requests) == 0
    session.send_message.assert_called_once()


@pytest.mark.anyio
async def test_wait_for_task_update_ends_through_the_queue_when_the_store_wait_fails(
    tasks: RedisTaskStore, queue: RedisTaskMessageQueue
) -> None:
    handler = TaskResultHandler(tasks, queue)

    async def failing_wait(task_id: str) -> None:
        raise RuntimeError("Store error")

    tasks.wait_for_update = failing_wait  # type: ignore[method-assign]
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(handler._wait_for_task_update, "task-1")
            await anyio.sleep(0.05)
            await queue.enqueue(
                "task-1", QueuedMessage(type="notification", message=make_notification())
            )


# --- across processes -------------------------------------------------------------------------


async def queue_request(
    queue: RedisTaskMessageQueue, task_id: str, request_id: str
) -> Resolver[dict[str, Any]]:
    """Queue a request the way ServerTaskContext.elicit does; return its resolver."""
    resolver: Resolver[dict[str, Any]] = Resolver()
    await queue.enqueue(
        task_id,
        QueuedMessage(
            type="request",
            message=make_request(request_id, "elicitation/create"),
            resolver=resolver,
            original_request_id=request_id,
        ),
    )
    return resolver


@pytest.mark.anyio
async def test_an_answer_given_in_another_process_reaches_the_waiting_worker(
    make: Callable[..., Node],
) -> None:
    (store, worker_queue), (_, server_queue) = make(), make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    taken = await server_queue.dequeue("task-1")
    assert taken is not None
    assert taken.original_request_id == "req-7"
    assert isinstance(taken.resolver, AnswerForwarder)  # the worker's resolver stayed home
    assert taken.resolver is not waiter
    taken.resolver.set_result({"action": "accept", "content": {"name": "Ada"}})
    with anyio.fail_after(GUARD):
        assert await waiter.wait() == {"action": "accept", "content": {"name": "Ada"}}
    await server_queue.aclose()
    record = await store.store.get("task-1", owner_id="server")
    assert record.variables == {}  # message and answer both gone
    assert worker_queue.waiting_requests() == 0


@pytest.mark.anyio
async def test_an_error_given_in_another_process_reaches_the_worker_as_mcp_error(
    make: Callable[..., Node],
) -> None:
    (store, worker_queue), (_, server_queue) = make(), make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    handler = TaskResultHandler(store, server_queue)
    session = Mock()
    session.send_message = AsyncMock()
    await handler._deliver_queued_messages("task-1", session, "outer-req-1")
    error = ErrorData(code=INVALID_REQUEST, message="user declined to say")
    assert handler.route_error("req-7", error)
    with anyio.fail_after(GUARD), pytest.raises(McpError) as raised:
        await waiter.wait()
    assert raised.value.error == error


@pytest.mark.anyio
async def test_a_request_is_delivered_through_tasks_result_on_another_process(
    make: Callable[..., Node],
) -> None:
    """The worker asks on one process; tasks/result on another delivers, answers, returns."""
    (worker_store, worker_queue), (server_store, server_queue) = make(), make()
    await worker_store.create_task(MINUTE, task_id="task-1")
    handler = TaskResultHandler(server_store, server_queue)
    sent: list[SessionMessage] = []
    session = mock_session(sent)
    answers: list[dict[str, Any]] = []

    async def worker() -> None:
        await worker_store.update_task("task-1", status="input_required")
        waiter = await queue_request(worker_queue, "task-1", "task-task-1-1")
        answers.append(await waiter.wait())
        await worker_store.update_task("task-1", status="working")
        result = CallToolResult(content=[TextContent(type="text", text="thanks")])
        await worker_store.store_result("task-1", result)
        await worker_store.update_task("task-1", status="completed")

    async def client() -> None:  # answers each request the moment it is sent
        while not sent:
            await anyio.sleep(0.01)
        request_id = sent[0].message.root.id  # type: ignore[union-attr]
        assert handler.route_response(request_id, {"action": "accept"})

    request = GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(taskId="task-1"))
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(worker)
            group.start_soon(client)
            response = await handler.handle(request, session, "outer-1")
    assert answers == [{"action": "accept"}]
    got = CallToolResult.model_validate(response.model_dump(by_alias=True))
    assert got.content == [TextContent(type="text", text="thanks")]
    assert sent[0].metadata is not None
    assert sent[0].metadata.related_request_id == "outer-1"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_each_message_is_taken_once_by_concurrent_dequeues(
    make: Callable[..., Node],
) -> None:
    nodes = [make() for _ in range(4)]
    store = nodes[0][0]
    await store.create_task(MINUTE, task_id="task-1")
    for number in range(8):
        await nodes[0][1].enqueue("task-1", request_message(number, f"m{number}"))
    taken: list[str] = []

    async def drain(queue: RedisTaskMessageQueue) -> None:
        while (message := await queue.dequeue("task-1")) is not None:
            taken.append(message.message.method)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            for _, queue in nodes:
                group.start_soon(drain, queue)
    assert sorted(taken) == sorted(f"m{number}" for number in range(8))
    assert await nodes[0][1].is_empty("task-1")


@pytest.mark.anyio
async def test_a_worker_waiting_for_an_answer_hears_when_its_task_is_cancelled(
    make: Callable[..., Node],
) -> None:
    (store, worker_queue), (other_store, _) = make(), make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    await other_store.update_task("task-1", status="cancelled")
    with anyio.fail_after(GUARD), pytest.raises(McpError, match="cancelled"):
        await waiter.wait()


@pytest.mark.anyio
async def test_a_worker_waiting_for_an_answer_hears_when_its_task_is_deleted(
    make: Callable[..., Node],
) -> None:
    (store, worker_queue), (other_store, _) = make(), make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    assert await other_store.delete_task("task-1")
    with anyio.fail_after(GUARD), pytest.raises(McpError, match="gone"):
        await waiter.wait()


@pytest.mark.anyio
async def test_an_answer_too_large_for_the_store_reaches_the_worker_as_an_error(
    make: Callable[..., Node],
) -> None:
    config = StoreConfig(max_variable_size_bytes=2_000)
    (store, worker_queue), (_, server_queue) = make(config=config), make(config=config)
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    taken = await server_queue.dequeue("task-1")
    assert taken is not None and taken.resolver is not None
    taken.resolver.set_result({"text": "a" * 5_000})
    with anyio.fail_after(GUARD), pytest.raises(McpError, match="answer not stored"):
        await waiter.wait()


@pytest.mark.anyio
async def test_a_request_answered_in_its_own_process_stops_watching_the_task(
    make: Callable[..., Node],
) -> None:
    (store, queue) = make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(queue, "task-1", "req-7")
    assert queue.waiting_requests() == 1
    taken = await queue.dequeue("task-1")
    assert taken is not None and taken.resolver is waiter
    waiter.set_result({"action": "decline"})
    with anyio.fail_after(GUARD):
        while queue.waiting_requests():
            await anyio.sleep(0.01)
    assert await waiter.wait() == {"action": "decline"}


@pytest.mark.anyio
async def test_a_worker_waiting_for_an_answer_hears_when_its_queue_is_closed(
    make: Callable[..., Node],
) -> None:
    (store, worker_queue) = make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    await worker_queue.aclose()
    with anyio.fail_after(GUARD), pytest.raises(McpError, match="closed"):
        await waiter.wait()
    assert worker_queue.waiting_requests() == 0


@pytest.mark.anyio
async def test_a_worker_waiting_for_an_answer_hears_when_its_redis_store_is_closed(
    make: Callable[..., Node], backend_kind: str
) -> None:
    if backend_kind == "memory":
        pytest.skip("closing the in-memory backend ends no wait: it holds nothing to release")
    (store, worker_queue) = make()
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    await anyio.sleep(0.05)  # the watch for the answer is in place
    await store.aclose()
    with anyio.fail_after(GUARD), pytest.raises(McpError, match="closed"):
        await waiter.wait()


@pytest.mark.anyio
async def test_a_request_answered_elsewhere_leaves_the_worker_handler(
    make: Callable[..., Node],
) -> None:
    """The worker's result handler forgets a resolver answered through another process."""
    (store, worker_queue), (_, server_queue) = make(), make()
    handler = TaskResultHandler(store, worker_queue)
    worker_queue.use_handler(handler)
    await store.create_task(MINUTE, task_id="task-1")
    waiter = await queue_request(worker_queue, "task-1", "req-7")
    handler._pending_requests["req-7"] = waiter  # as ServerTaskContext.elicit does
    taken = await server_queue.dequeue("task-1")
    assert taken is not None and taken.resolver is not None
    taken.resolver.set_result({"action": "accept"})
    with anyio.fail_after(GUARD):
        assert await waiter.wait() == {"action": "accept"}
        while "req-7" in handler._pending_requests:
            await anyio.sleep(0.01)
