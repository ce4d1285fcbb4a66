"""The MCP tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) on the task store.

Framework-neutral: :class:`TasksProtocol` answers ``tasks/get``, ``tasks/update`` and
``tasks/cancel`` from their JSON-RPC ``params`` with the JSON-ready ``result``, and
builds the flat ``CreateTaskResult`` (``resultType: "task"``) a ``tools/call``
returns instead of its result. Wire it into any server: the MCP SDK's low-level
request handlers, a Starlette route, a JSON-RPC dispatcher. It needs no MCP SDK.

The worker side, in any process sharing the store, asks the client for input
(:meth:`TasksProtocol.request_input`, :meth:`TasksProtocol.wait_for_input`) and
ends the task (:meth:`TasksProtocol.complete`, :meth:`TasksProtocol.fail`).

Unknown tasks, tasks of another owner and tasks whose TTL ran out raise
``TaskNotFound`` or ``TaskExpired``, whose ``code`` is ``-32602`` (invalid params);
:func:`error_object` turns any error of the library into a JSON-RPC error object.

How a task keeps the extension's data: a completed task's result is the tool's
result object; a failed task's result is the JSON-RPC error object; each input
request and each input response is a variable of its own (``mcp.inputRequests.<key>``,
``mcp.inputResponses.<key>``), so concurrent answers to distinct keys never
conflict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from time import monotonic
from typing import Any

from .._async._store import GenericTaskStore
from .._core.errors import (
    INTERNAL_ERROR,
    InvalidArgument,
    InvalidTransition,
    TaskExpired,
    TaskStoreError,
    WaitTimeout,
)
from .._core.model import JSONValue, TaskRecord
from .._core.status import TaskStatus
from ._owner import OwnerSource, resolve_owner

EXTENSION_ID = "io.modelcontextprotocol/tasks"
"""The extension's identifier, as clients and servers declare it in their capabilities."""

REQUEST_PREFIX = "mcp.inputRequests."
"""Variable name prefix of an input request (the key follows)."""
RESPONSE_PREFIX = "mcp.inputResponses."
"""Variable name prefix of an input response (the key follows)."""

JSONObject = dict[str, JSONValue]


def error_object(error: BaseException) -> JSONObject:
    """The JSON-RPC error object for an error: its ``code`` (-32603 if it has none)."""
    code = error.code if isinstance(error, TaskStoreError) else INTERNAL_ERROR
    return {"code": code, "message": str(error)}


def task_fields(record: TaskRecord) -> JSONObject:
    """The extension's ``Task`` fields of a record (no status-specific payload)."""
    task = record.task
    fields: JSONObject = {"taskId": task.task_id, "status": task.status.value}
    if task.status_message is not None:
        fields["statusMessage"] = task.status_message
    fields["createdAt"] = task.created_at
    fields["lastUpdatedAt"] = task.last_updated_at
    fields["ttlMs"] = task.ttl
    fields["pollIntervalMs"] = task.poll_interval
    return fields


def create_task_result(record: TaskRecord) -> JSONObject:
    """The flat ``CreateTaskResult`` of a new task: ``resultType: "task"`` and its fields."""
    return {"resultType": "task", **task_fields(record)}


def outstanding_requests(record: TaskRecord) -> JSONObject:
    """The input requests of a task that no response has answered yet, by key."""
    variables = record.variables
    return {
        name[len(REQUEST_PREFIX) :]: value
        for name, value in variables.items()
        if name.startswith(REQUEST_PREFIX)
        and RESPONSE_PREFIX + name[len(REQUEST_PREFIX) :] not in variables
    }


def detailed_task(record: TaskRecord) -> JSONObject:
    """The ``DetailedTask`` of a record, as ``tasks/get`` returns it (``resultType: "complete"``).

    A completed task carries ``result``, a failed one ``error``, one waiting for
    input ``inputRequests`` (those not answered yet).
    """
    detailed: JSONObject = {"resultType": "complete", **task_fields(record)}
    status = record.task.status
    if status is TaskStatus.COMPLETED:
        detailed["result"] = record.result if isinstance(record.result, dict) else {}
    elif status is TaskStatus.FAILED:
        error = record.result
        if not isinstance(error, dict):
            error = {
                "code": INTERNAL_ERROR,
                "message": record.task.status_message or "the task failed",
            }
        detailed["error"] = error
    elif status is TaskStatus.INPUT_REQUIRED:
        detailed["inputRequests"] = outstanding_requests(record)
    return detailed


def _task_id(params: Mapping[str, Any] | None) -> str:
    task_id = None if params is None else params.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidArgument("params.taskId must be a non-empty string")
    return task_id


def _object(value: Any, what: str) -> JSONObject:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be an object")
    return value


class TasksProtocol:
    """The tasks extension's handlers and worker operations for the tasks of one owner.

    ``owner`` is an owner id, or a function returning the owner of the request
    being served; a task of another owner is answered as unknown.
    """

    def __init__(self, store: GenericTaskStore, owner: OwnerSource) -> None:
        """Serve the tasks of ``owner`` kept in ``store`` (the async task store)."""
        self._store = store
        self._owner = owner

    @property
    def store(self) -> GenericTaskStore:
        """The task store underneath."""
        return self._store

    def owner_id(self) -> str:
        """The owner whose tasks this call may see."""
        return resolve_owner(self._owner)

    # --- creating a task --------------------------------------------------------------------

    async def create(
        self,
        request_method: str = "tools/call",
        ttl_ms: int | None = None,
        *,
        task_id: str | None = None,
        status_message: str | None = None,
    ) -> tuple[TaskRecord, JSONObject]:
        """Create a ``working`` task; return it and the ``CreateTaskResult`` to answer with.

        Returns once the task is written on the server every process reads from,
        so a ``tasks/get`` for it succeeds from any process (with ``wait_replicas``
        set on the backend, once replicas acknowledged it too).
        """
        owner = self.owner_id()
        record = await self._store.create(request_method, ttl_ms, owner_id=owner, task_id=task_id)
        if status_message is not None:
            record = await self._store.set_status_message(
                record.task.task_id, status_message, owner_id=owner
            )
        return record, create_task_result(record)

    async def submit(
        self,
        params: JSONValue,
        *,
        queue: str = "default",
        request_method: str = "tools/call",
        ttl_ms: int | None = None,
        max_attempts: int | None = None,
    ) -> tuple[TaskRecord, JSONObject]:
        """Queue a ``working`` task for a worker pool; return it and its ``CreateTaskResult``.

        The task's work is ``params`` (plain JSON, the job's input) on the work
        queue ``queue``: a worker (``claim``, ``run_worker``) in any process runs it
        and ends the task through its lease, and a worker that dies mid-task
        leaves it to the next claim once its lease expires (up to
        ``max_attempts`` attempts). Returns once ``tasks/get`` would find it from
        any process, like :meth:`create`.
        """
        record = await self._store.submit(
            request_method,
            params,
            owner_id=self.owner_id(),
            queue=queue,
            ttl_ms=ttl_ms,
            max_attempts=max_attempts,
        )
        return record, create_task_result(record)

    # --- the client's requests --------------------------------------------------------------

    async def handle(self, method: str, params: Mapping[str, Any] | None) -> JSONObject:
        """Answer ``tasks/get``, ``tasks/update`` or ``tasks/cancel``; the JSON-RPC result.

        Raises:
            InvalidArgument: another method, or malformed params (code -32602).
            TaskNotFound: no such task for this owner (code -32602).
            TaskExpired: the task's TTL ran out (code -32602).

        """
        if method == "tasks/get":
            return await self.get(params)
        if method == "tasks/update":
            return await self.update(params)
        if method == "tasks/cancel":
            return await self.cancel(params)
        raise InvalidArgument(f"not a method of the tasks extension: {method!r}")

    async def get(self, params: Mapping[str, Any] | None) -> JSONObject:
        """``tasks/get``: the task's ``DetailedTask``."""
        return detailed_task(await self._live(_task_id(params)))

    async def update(self, params: Mapping[str, Any] | None) -> JSONObject:
        """``tasks/update``: keep the answers to outstanding input requests; ack empty.

        Answers to keys that are not outstanding (never asked, already answered)
        are ignored, as the extension says; a partial set is kept and the task
        stays ``input_required`` until its worker has what it needs.
        """
        task_id = _task_id(params)
        assert params is not None
        responses = _object(params.get("inputResponses"), "params.inputResponses")
        record = await self._live(task_id)
        outstanding = outstanding_requests(record)
        answers = {
            RESPONSE_PREFIX + key: value
            for key, value in responses.items()
            if key in outstanding and value is not None
        }
        if answers:
            await self._store.set_variables(task_id, answers, owner_id=record.owner_id)
        return {"resultType": "complete"}

    async def cancel(self, params: Mapping[str, Any] | None) -> JSONObject:
        """``tasks/cancel``: move an unfinished task to ``cancelled``; ack empty.

        A task that already ended keeps its status (cancellation is cooperative
        and may lose the race with the end of the work); the ack is the same.
        """
        task_id = _task_id(params)
        record = await self._live(task_id)
        if not record.task.status.is_terminal:
            with contextlib.suppress(InvalidTransition):  # it ended meanwhile
                await self._store.cancel(task_id, owner_id=record.owner_id)
        return {"resultType": "complete"}

    # --- the worker's side ------------------------------------------------------------------

    async def request_input(
        self,
        task_id: str,
        requests: Mapping[str, JSONObject],
        *,
        status_message: str | None = None,
    ) -> TaskRecord:
        """Ask the client for input: the requests show in ``tasks/get`` as ``inputRequests``.

        Each key names one request for the task's whole life: a key used before
        is refused. The task moves to ``input_required``.

        Raises:
            InvalidArgument: no request, a request that is not an object, or a key
                used before.
            InvalidTransition: the task already ended.

        """
        if not requests:
            raise InvalidArgument("request_input needs at least one request")
        owner = self.owner_id()
        record = await self._live(task_id)
        used = [
            key
            for key in requests
            if REQUEST_PREFIX + key in record.variables or RESPONSE_PREFIX + key in record.variables
        ]
        if used:
            raise InvalidArgument(f"input request keys already used for this task: {used}")
        await self._store.set_variables(
            task_id,
            {REQUEST_PREFIX + key: _object(value, "a request") for key, value in requests.items()},
            owner_id=owner,
        )
        if record.task.status is TaskStatus.INPUT_REQUIRED:
            if status_message is None:
                return await self._store.get(task_id, owner_id=owner)
            return await self._store.set_status_message(task_id, status_message, owner_id=owner)
        return await self._store.update_status(
            task_id, TaskStatus.INPUT_REQUIRED, status_message, owner_id=owner
        )

    async def wait_for_input(
        self, task_id: str, keys: list[str] | None = None, *, timeout: float | None = None
    ) -> JSONObject:
        """Wait until the client answered the requests ``keys`` (None: all asked so far).

        Returns the answers by key. Once no request is outstanding, the task moves
        back to ``working``. Wakes as soon as a ``tasks/update`` lands, in any process.

        Raises:
            WaitTimeout: ``timeout`` seconds passed first.
            TaskNotFound, TaskExpired: the task is gone or its TTL ran out.
            InvalidTransition: the task ended meanwhile (cancelled, say).

        """
        owner = self.owner_id()
        deadline = None if timeout is None else monotonic() + timeout
        record = await self._live(task_id)
        while True:
            wanted = keys
            if wanted is None:
                wanted = [
                    name[len(REQUEST_PREFIX) :]
                    for name in record.variables
                    if name.startswith(REQUEST_PREFIX)
                ]
            answers = {
                key: record.variables[RESPONSE_PREFIX + key]
                for key in wanted
                if RESPONSE_PREFIX + key in record.variables
            }
            if len(answers) == len(wanted):
                if record.task.status is TaskStatus.INPUT_REQUIRED and not outstanding_requests(
                    record
                ):
                    await self._store.update_status(task_id, TaskStatus.WORKING, owner_id=owner)
                return answers
            if record.task.status.is_terminal:
                status = record.task.status.value
                raise InvalidTransition(task_id, status, TaskStatus.WORKING.value)
            left = None if deadline is None else deadline - monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(task_id, timeout or 0.0)
            record = await self._store.wait(
                task_id, owner_id=owner, after_version=record.version, timeout=left
            )

    async def complete(
        self, task_id: str, result: JSONObject, status_message: str | None = None
    ) -> TaskRecord:
        """End the task as ``completed`` with ``result`` (the tool's result object)."""
        return await self._store.complete_with_result(
            task_id,
            TaskStatus.COMPLETED,
            status_message,
            _object(result, "result"),
            owner_id=self.owner_id(),
        )

    async def fail(
        self, task_id: str, error: JSONObject, status_message: str | None = None
    ) -> TaskRecord:
        """End the task as ``failed`` with ``error``, a JSON-RPC error object."""
        checked = _object(error, "error")
        if not isinstance(checked.get("code"), int) or not isinstance(checked.get("message"), str):
            raise InvalidArgument("error must be a JSON-RPC error object (int code, str message)")
        return await self._store.complete_with_result(
            task_id, TaskStatus.FAILED, status_message, checked, owner_id=self.owner_id()
        )

    async def _live(self, task_id: str) -> TaskRecord:
        record = await self._store.get(task_id, owner_id=self.owner_id())
        if record.is_expired():
            raise TaskExpired(task_id)
        return record


__all__ = [
    "EXTENSION_ID",
    "REQUEST_PREFIX",
    "RESPONSE_PREFIX",
    "JSONObject",
    "OwnerSource",
    "TasksProtocol",
    "create_task_result",
    "detailed_task",
    "error_object",
    "outstanding_requests",
    "task_fields",
]
