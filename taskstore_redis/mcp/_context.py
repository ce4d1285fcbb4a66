"""What a task tool sees while it runs on a worker: :class:`TaskContext`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._async._lease import Lease
from .._core.errors import InvalidArgument
from .._core.model import JSONValue
from .._core.status import TaskStatus
from .protocol import REQUEST_PREFIX, JSONObject, TasksProtocol


class InputUnavailable(InvalidArgument):
    """A tool asked for input in a call that runs inline, not as a task.

    Input during a call (``inputRequests`` answered by ``tasks/update``) exists only
    for a task; a client without the tasks capability cannot be asked.
    """


class TaskContext:
    """The running task of a tool call: report progress, ask for input, see a cancel.

    A task tool receives it through a parameter annotated ``TaskContext`` (any name);
    that parameter is not part of the tool's input schema. On a worker, every write
    goes through the task's lease, so a worker that lost the task (its lease ran out
    and another worker took it over, or the task was cancelled) writes nothing: its
    write raises ``LeaseLost`` and the run stops.

    A cancel (``tasks/cancel``) cancels the tool's coroutine at its next ``await``
    (a sync tool's writes raise ``LeaseLost``).
    """

    def __init__(
        self,
        lease: Lease | None,
        protocol: TasksProtocol | None,
        request: Mapping[str, JSONValue] | None = None,
    ) -> None:
        """The context of the task ``lease`` holds (None: a call running inline)."""
        self._lease = lease
        self._protocol = protocol
        self._request: dict[str, JSONValue] = dict(request or {})
        self._asked = 0

    @property
    def task_id(self) -> str | None:
        """The task's id; None when the call runs inline, not as a task."""
        return None if self._lease is None else self._lease.task_id

    @property
    def attempt(self) -> int:
        """Which attempt this run is: 1, or more after a worker died mid-task."""
        return 1 if self._lease is None else self._lease.attempt

    @property
    def principal(self) -> JSONValue:
        """Who called the tool: the owner and the access token's client, subject and scopes."""
        return self._request.get("principal")

    @property
    def headers(self) -> dict[str, str]:
        """The HTTP headers of the call that the extension was told to carry to workers."""
        headers = self._request.get("headers")
        if not isinstance(headers, dict):
            return {}
        return {name: value for name, value in headers.items() if isinstance(value, str)}

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Say how far the task is: its status message, as ``tasks/get`` shows it.

        The tasks extension carries no progress notifications; the status message
        reads ``"3/10: message"`` (or ``"3: message"`` without a total).
        """
        done = f"{progress:g}" if total is None else f"{progress:g}/{total:g}"
        await self.set_status(done if message is None else f"{done}: {message}")

    async def set_status(self, message: str | None) -> None:
        """Set the task's status message (None clears it)."""
        if self._lease is not None:
            await self._lease.set_status_message(message)

    async def elicit(self, message: str, requested_schema: Mapping[str, Any]) -> JSONObject:
        """Ask the client for input and wait for the answer; return the ``ElicitResult``.

        The task moves to ``input_required`` and shows the request in ``tasks/get``
        (``inputRequests``) until the client answers through ``tasks/update``, from
        any server process; the answer is ``{"action": "accept", "content": {...}}``,
        ``{"action": "decline"}`` or ``{"action": "cancel"}``. A run that is an
        attempt after a worker died reuses the requests its earlier attempt made,
        and their answers.

        Raises:
            InputUnavailable: the call runs inline, not as a task.

        """
        request: JSONObject = {
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": message,
                "requestedSchema": dict(requested_schema),
            },
        }
        return await self.request_input(request)

    async def request_input(self, request: JSONObject) -> JSONObject:
        """Ask the client one input request (a serialized request); return its answer."""
        if self._lease is None or self._protocol is None:
            raise InputUnavailable(
                "this call runs inline (the client did not declare the tasks extension): "
                "it cannot be asked for input"
            )
        self._asked += 1
        key = f"input-{self._asked}"
        task_id = self._lease.task_id
        record = await self._protocol.store.get(task_id, owner_id=self._lease.owner_id)
        if REQUEST_PREFIX + key not in record.variables:  # else an earlier attempt asked it
            await self._protocol.request_input(task_id, {key: request})
        answers = await self._protocol.wait_for_input(task_id, [key])
        answer = answers[key]
        if not isinstance(answer, dict):
            raise InvalidArgument(f"the answer to input request {key!r} is not an object")
        return answer

    async def is_cancelled(self) -> bool:
        """Whether the task was cancelled (read from the store)."""
        if self._lease is None or self._protocol is None:
            return False
        record = await self._protocol.store.get(self._lease.task_id, owner_id=self._lease.owner_id)
        return record.task.status is TaskStatus.CANCELLED


__all__ = ["InputUnavailable", "TaskContext"]
