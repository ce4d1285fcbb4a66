"""RedisTaskMessageQueue: the MCP Python SDK's ``TaskMessageQueue`` kept in the task store.

A task's queued messages, and the answers to them, are variables of the task:

- ``mcp.messages.<id>``: a queued message (its JSON-RPC message as JSON text, the
  queue entry's type, time and original request id). ``<id>`` is a sequence
  number (one above the highest queued) and a random part: they sort in FIFO order.
- ``mcp.messages.<id>.taken.<token>``: a claim on the message by one ``dequeue``;
  the claim that finds itself alone takes the message (the others withdraw), so a
  message is delivered once even when several processes serve ``tasks/result``.
- ``mcp.answers.<id>``: the client's answer to a request (its result or its
  error), written by the process that delivered the request and read, then
  removed, by the process whose worker waits for it.
- ``mcp.messages.notified``: what ``notify_message_available`` changes.

Every write is a variable merge, so it moves the task's version on and wakes the
task's waiters in every process (``GenericTaskStore.wait``): no wakeup is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import anyio
from mcp.server.experimental.task_result_handler import TaskResultHandler
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.message_queue import QueuedMessage
from mcp.shared.experimental.tasks.message_queue import TaskMessageQueue as SdkTaskMessageQueue
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCNotification,
    JSONRPCRequest,
    RequestId,
)

from .._core.errors import InvalidArgument, StoreUnavailable, TaskExpired, TaskNotFound
from .._core.model import JSONValue, TaskRecord
from ._store import RedisTaskStore

logger = logging.getLogger(__name__)

MESSAGE_PREFIX = "mcp.messages."
"""Variable name prefix of a queued message (its id follows)."""
ANSWER_PREFIX = "mcp.answers."
"""Variable name prefix of the client's answer to a queued request (its id follows)."""
NOTIFIED = "mcp.messages.notified"
"""The variable ``notify_message_available`` changes."""
_TAKEN = ".taken."
_FORWARD_ATTEMPTS = 5
_RETRY_PAUSE_FIRST = 0.05
_RETRY_PAUSE_MAX = 2.0

Answer = dict[str, Any]
_LocalKey = tuple[str, str, str]


@dataclass(frozen=True)
class _Entry:
    """A queued message as the task holds it."""

    message_id: str
    value: dict[str, JSONValue]
    claims: tuple[str, ...]


def _sort_key(message_id: str) -> tuple[int, str]:
    number, _, rest = message_id.partition(".")
    return (int(number) if number.isdigit() else 0, rest)


def _entries(record: TaskRecord) -> list[_Entry]:
    """The task's queued messages, oldest first, each with its claims."""
    messages: dict[str, dict[str, JSONValue]] = {}
    claims: dict[str, list[str]] = {}
    for name, value in record.variables.items():
        if not name.startswith(MESSAGE_PREFIX) or name == NOTIFIED:
            continue
        rest = name[len(MESSAGE_PREFIX) :]
        message_id, taken, token = rest.partition(_TAKEN)
        if taken:
            claims.setdefault(message_id, []).append(token)
        elif isinstance(value, dict):
            messages[message_id] = value
    return [
        _Entry(
            message_id=message_id,
            value=messages[message_id],
            claims=tuple(claims.get(message_id, ())),
        )
        for message_id in sorted(messages, key=_sort_key)
    ]


def _claim_name(message_id: str, token: str) -> str:
    return f"{MESSAGE_PREFIX}{message_id}{_TAKEN}{token}"


def _encode(message: QueuedMessage, expects_answer: bool) -> dict[str, JSONValue]:
    jsonrpc = message.message.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "type": message.type,
        "kind": "request" if isinstance(message.message, JSONRPCRequest) else "notification",
        "message": json.dumps(jsonrpc, separators=(",", ":")),
        "timestamp": message.timestamp.isoformat(),
        "originalRequestId": message.original_request_id,
        "expectsAnswer": expects_answer,
    }


class AnswerForwarder(Resolver[dict[str, Any]]):
    """The resolver of a request queued by a worker in another process (or queue object).

    An SDK ``Resolver`` cannot cross processes, so the one a worker waits on stays
    with the worker. The process that delivers the request gets this one instead:
    when the client's answer (or error) is set on it, as the SDK's
    ``TaskResultHandler.route_response``/``route_error`` do, it resolves here and is
    also written to the task (``mcp.answers.<id>``), where the worker's process
    reads it and resolves the worker's own resolver.
    """

    def __init__(self, queue: RedisTaskMessageQueue, owner: str, task_id: str, message_id: str):
        """Forward the answer to ``message_id`` of ``owner``'s task ``task_id``."""
        super().__init__()
        self._queue = queue
        self._owner = owner
        self._task_id = task_id
        self._message_id = message_id

    def set_result(self, value: dict[str, Any]) -> None:
        """Resolve with the client's result, and send it to the waiting worker."""
        super().set_result(value)
        self._queue._forward(self._owner, self._task_id, self._message_id, {"result": value})

    def set_exception(self, exc: BaseException) -> None:
        """Resolve with an error, and send it (as a JSON-RPC error) to the waiting worker."""
        super().set_exception(exc)
        if isinstance(exc, McpError):
            error = exc.error
        else:
            error = ErrorData(code=INTERNAL_ERROR, message=str(exc))
        self._queue._forward(
            self._owner,
            self._task_id,
            self._message_id,
            {"error": error.model_dump(mode="json", exclude_none=True)},
        )


class RedisTaskMessageQueue(SdkTaskMessageQueue):
    """An MCP SDK ``TaskMessageQueue`` whose messages live with their task in the task store.

    A worker running a task in one server process queues a request for the client
    (``ServerTaskContext.elicit``, ``create_message``); whichever process serves the
    client's ``tasks/result`` dequeues and delivers it; the client's answer reaches
    the worker, wherever it runs. Messages belong to the task (and its owner): they
    go when the task is deleted or purged.

    Resolvers: the SDK's in-process ``Resolver`` of a queued request stays in the
    process that queued it. ``dequeue`` and ``peek`` through the same queue object
    give back that very resolver; through any other (another process) they give an
    :class:`AnswerForwarder`, which writes the answer to the task. The queuing
    process watches the task for that answer (a background asyncio task per
    waiting request, ended by the answer, by the resolver being resolved in this
    process, or by the task ending, being deleted or expiring) and resolves the
    worker's resolver with it. A request whose task ends (cancelled, say) or goes
    before an answer came resolves with an ``McpError``, so its worker does not
    wait forever.

    Limits: a message's JSON and an answer's each count against the store's
    ``max_string_length`` and the task's ``max_variable_size_bytes``; a message too
    large raises ValueError from ``enqueue`` (nothing queued); an answer too large
    reaches the worker as an ``McpError``. Build it on the ``RedisTaskStore`` the
    server uses (same store, same owners); it needs a running asyncio loop.
    """

    def __init__(self, tasks: RedisTaskStore) -> None:
        """Queue the messages of the tasks ``tasks`` serves (its store and its owners)."""
        self._tasks = tasks
        self._local: dict[_LocalKey, Resolver[dict[str, Any]]] = {}
        self._handlers: list[TaskResultHandler] = []
        self._background: set[asyncio.Task[None]] = set()
        self._forwards: set[asyncio.Task[None]] = set()

    @property
    def task_store(self) -> RedisTaskStore:
        """The ``RedisTaskStore`` whose tasks hold the messages."""
        return self._tasks

    async def aclose(self) -> None:
        """Finish writing the answers being forwarded; stop watching for answers.

        A worker still waiting for an answer through this queue gets an ``McpError``.
        """
        if self._forwards:
            await asyncio.gather(*self._forwards, return_exceptions=True)
        for watcher in list(self._background):
            watcher.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        waiting, self._local = self._local, {}
        for (_, task_id, _), waiter in waiting.items():
            self._fail(waiter, f"The message queue was closed; task {task_id} got no answer")

    def use_handler(self, handler: TaskResultHandler) -> None:
        """Keep ``handler`` (``enable_tasks(...).handler``) free of requests answered elsewhere.

        ``ServerTaskContext`` registers each request's resolver with the result
        handler of the worker's process, which forgets it only when the answer
        comes through that process. Told the handler, the queue drops the resolver
        once the request is answered (or ends) any other way.
        """
        self._handlers.append(handler)

    def waiting_requests(self) -> int:
        """How many queued requests this object waits for an answer to (for diagnostics)."""
        return len(self._local)

    # --- the SDK's TaskMessageQueue -------------------------------------------------------

    async def enqueue(self, task_id: str, message: QueuedMessage) -> None:
        """Queue ``message`` on the task; raise ValueError if there is no such task.

        A request with a resolver gets its answer through any process: see the class.
        """
        owner = self._tasks.owner_id()
        record = await self._record(task_id, owner)
        if record is None:
            raise ValueError(f"Task with ID {task_id} not found")
        entries = _entries(record)
        number = _sort_key(entries[-1].message_id)[0] + 1 if entries else 1
        message_id = f"{number:012d}.{uuid.uuid4().hex[:12]}"
        waiter = message.resolver if message.type == "request" else None
        value = _encode(message, waiter is not None)
        await self._write(task_id, owner, {MESSAGE_PREFIX + message_id: value})
        if waiter is not None:
            key = (owner, task_id, message_id)
            self._local[key] = waiter
            answering = self._await_answer(key, waiter, message.original_request_id)
            self._spawn(self._background, answering)

    async def dequeue(self, task_id: str) -> QueuedMessage | None:
        """Take the task's oldest message (each message is taken once); None if none."""
        owner = self._tasks.owner_id()
        while True:
            record = await self._record(task_id, owner)
            pending = [] if record is None else [e for e in _entries(record) if not e.claims]
            if not pending:
                return None
            entry = pending[0]
            token = uuid.uuid4().hex
            mine = _claim_name(entry.message_id, token)
            try:
                claimed = await self._tasks.store.set_variables(
                    task_id, {mine: True}, owner_id=owner
                )
            except (TaskNotFound, TaskExpired):
                return None
            now = next((e for e in _entries(claimed) if e.message_id == entry.message_id), None)
            if now is not None and now.claims == (token,):
                gone: dict[str, Any] = {MESSAGE_PREFIX + entry.message_id: None, mine: None}
                # the message is ours now; left behind (the store out of reach), it stays
                # claimed, so no one else takes it, until clear() or the task goes
                with contextlib.suppress(TaskNotFound, TaskExpired, StoreUnavailable):
                    await self._tasks.store.set_variables(task_id, gone, owner_id=owner)
                return self._decode(owner, task_id, entry)
            # another dequeue came first (or its reply was lost): withdraw and look again
            with contextlib.suppress(TaskNotFound, TaskExpired):
                await self._tasks.store.set_variables(task_id, {mine: None}, owner_id=owner)

    async def peek(self, task_id: str) -> QueuedMessage | None:
        """The task's oldest message, left in the queue; None if none."""
        owner = self._tasks.owner_id()
        record = await self._record(task_id, owner)
        pending = [] if record is None else [e for e in _entries(record) if not e.claims]
        return self._decode(owner, task_id, pending[0]) if pending else None

    async def is_empty(self, task_id: str) -> bool:
        """Whether the task has no message left to take."""
        return await self.peek(task_id) is None

    async def clear(self, task_id: str) -> list[QueuedMessage]:
        """Remove all of the task's messages (taken or not) and return them, oldest first."""
        owner = self._tasks.owner_id()
        record = await self._record(task_id, owner)
        if record is None:
            return []
        entries = _entries(record)
        if not entries:
            return []
        gone: dict[str, Any] = {}
        for entry in entries:
            gone[MESSAGE_PREFIX + entry.message_id] = None
            for token in entry.claims:
                gone[_claim_name(entry.message_id, token)] = None
        with contextlib.suppress(TaskNotFound, TaskExpired):
            await self._tasks.store.set_variables(task_id, gone, owner_id=owner)
        return [self._decode(owner, task_id, entry) for entry in entries]

    async def wait_for_message(self, task_id: str) -> None:
        """Return once the task has a message to take, or ``notify_message_available`` ran.

        Raises:
            ValueError: no such task, or it was deleted or its TTL ran out meanwhile.

        """
        owner = self._tasks.owner_id()
        record = await self._record(task_id, owner)
        if record is None:
            raise ValueError(f"Task with ID {task_id} not found")
        notified = record.variables.get(NOTIFIED)
        while not any(not entry.claims for entry in _entries(record)):
            try:
                record = await self._tasks.store.wait(
                    task_id, owner_id=owner, after_version=record.version
                )
            except (TaskNotFound, TaskExpired):
                raise ValueError(f"Task with ID {task_id} not found") from None
            if record.variables.get(NOTIFIED) != notified:
                return

    async def notify_message_available(self, task_id: str) -> None:
        """Wake the task's ``wait_for_message`` callers in every process."""
        with contextlib.suppress(TaskNotFound, TaskExpired, InvalidArgument):
            await self._tasks.store.set_variables(
                task_id, {NOTIFIED: uuid.uuid4().hex}, owner_id=self._tasks.owner_id()
            )

    # --- answers --------------------------------------------------------------------------

    def _decode(self, owner: str, task_id: str, entry: _Entry) -> QueuedMessage:
        value = entry.value
        jsonrpc = json.loads(str(value["message"]))
        message: JSONRPCRequest | JSONRPCNotification
        if value.get("kind") == "request":
            message = JSONRPCRequest.model_validate(jsonrpc)
        else:
            message = JSONRPCNotification.model_validate(jsonrpc)
        resolver: Resolver[dict[str, Any]] | None = None
        if value.get("expectsAnswer") is True:
            resolver = self._local.get((owner, task_id, entry.message_id)) or AnswerForwarder(
                self, owner, task_id, entry.message_id
            )
        kind: Literal["request", "notification"] = (
            "request" if value.get("type") == "request" else "notification"
        )
        original = value.get("originalRequestId")
        return QueuedMessage(
            type=kind,
            message=message,
            timestamp=datetime.fromisoformat(str(value["timestamp"])),
            resolver=resolver,
            original_request_id=original if isinstance(original, (str, int)) else None,
        )

    async def _await_answer(
        self, key: _LocalKey, waiter: Resolver[dict[str, Any]], request_id: RequestId | None
    ) -> None:
        """Resolve ``waiter`` with the answer written to the task, unless it resolves here first."""
        try:
            async with anyio.create_task_group() as group:

                async def resolved_here() -> None:
                    with contextlib.suppress(Exception):
                        await waiter.wait()
                    group.cancel_scope.cancel()

                async def answered() -> None:
                    await self._read_answer(key, waiter)
                    group.cancel_scope.cancel()

                group.start_soon(resolved_here)
                group.start_soon(answered)
        finally:
            self._local.pop(key, None)
            if request_id is not None:
                for handler in self._handlers:
                    if handler._pending_requests.get(request_id) is waiter:
                        del handler._pending_requests[request_id]

    async def _read_answer(self, key: _LocalKey, waiter: Resolver[dict[str, Any]]) -> None:
        owner, task_id, message_id = key
        name = ANSWER_PREFIX + message_id
        version: int | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    record = await self._tasks.store.get(task_id, owner_id=owner)
                else:
                    record = await self._tasks.store.wait(
                        task_id, owner_id=owner, after_version=version
                    )
            except StoreUnavailable as exc:
                if exc.__cause__ is None:  # the store was closed: no answer can come
                    self._local.pop(key, None)
                    self._fail(waiter, f"The store was closed; task {task_id} got no answer")
                    return
                failures += 1  # out of reach for now (a restart, a failover): read again
                await anyio.sleep(min(_RETRY_PAUSE_MAX, _RETRY_PAUSE_FIRST * 2**failures))
                continue
            except (TaskNotFound, TaskExpired):
                self._local.pop(key, None)
                self._fail(waiter, f"Task {task_id} is gone; its request got no answer")
                return
            failures = 0
            answer = record.variables.get(name)
            if isinstance(answer, dict):
                with contextlib.suppress(TaskNotFound, TaskExpired, StoreUnavailable):
                    await self._tasks.store.set_variables(task_id, {name: None}, owner_id=owner)
                self._local.pop(key, None)
                if not waiter.done():
                    error = answer.get("error")
                    if isinstance(error, dict):
                        waiter.set_exception(McpError(ErrorData.model_validate(error)))
                    else:
                        result = answer.get("result")
                        waiter.set_result(result if isinstance(result, dict) else {})
                return
            if record.task.status.is_terminal:
                status = record.task.status.value
                self._local.pop(key, None)
                self._fail(waiter, f"Task {task_id} is {status}; its request got no answer")
                return
            version = record.version

    @staticmethod
    def _fail(waiter: Resolver[dict[str, Any]], message: str) -> None:
        if not waiter.done():
            waiter.set_exception(McpError(ErrorData(code=INTERNAL_ERROR, message=message)))

    def _forward(self, owner: str, task_id: str, message_id: str, answer: Answer) -> None:
        """Write ``answer`` to the task in the background (called from synchronous code)."""
        self._spawn(self._forwards, self._write_answer(owner, task_id, message_id, answer))

    async def _write_answer(
        self, owner: str, task_id: str, message_id: str, answer: Answer
    ) -> None:
        name = ANSWER_PREFIX + message_id
        for attempt in range(_FORWARD_ATTEMPTS):
            try:
                try:
                    await self._tasks.store.set_variables(task_id, {name: answer}, owner_id=owner)
                except InvalidArgument as exc:  # not JSON the store takes: the worker hears why
                    error = ErrorData(code=INTERNAL_ERROR, message=f"answer not stored: {exc}")
                    refused = {"error": error.model_dump(mode="json", exclude_none=True)}
                    await self._tasks.store.set_variables(task_id, {name: refused}, owner_id=owner)
                return
            except (TaskNotFound, TaskExpired):
                return  # nobody waits for it any more
            except StoreUnavailable:
                if attempt + 1 == _FORWARD_ATTEMPTS:
                    logger.exception("the answer to a request of task %s was lost", task_id)
                    return
                await anyio.sleep(min(_RETRY_PAUSE_MAX, _RETRY_PAUSE_FIRST * 2**attempt))

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # -------------------------------------------------------------------------------------

    async def _record(self, task_id: str, owner: str) -> TaskRecord | None:
        try:
            record = await self._tasks.store.get(task_id, owner_id=owner)
        except (TaskNotFound, InvalidArgument):
            return None
        return None if record.is_expired() else record

    async def _write(self, task_id: str, owner: str, variables: dict[str, Any]) -> None:
        try:
            await self._tasks.store.set_variables(task_id, variables, owner_id=owner)
        except (TaskNotFound, TaskExpired):
            raise ValueError(f"Task with ID {task_id} not found") from None
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None
