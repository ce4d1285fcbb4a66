"""The one error hierarchy of taskstore_redis.

Every error the library raises derives from :class:`TaskStoreError` and carries
``code``, the JSON-RPC error code an MCP server should answer with: ``-32602``
(invalid params) for what the caller did wrong, ``-32603`` (internal error) for
what the store could not do.
"""

from __future__ import annotations

from typing import Any

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


def _restore(cls: type[TaskStoreError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class TaskStoreError(Exception):
    """Root of every error raised by taskstore_redis.

    Errors pickle with their type, message and attributes, so one raised in a
    worker process reaches the parent intact.
    """

    code: int = INTERNAL_ERROR

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuild from type, args and attributes, whatever ``__init__`` takes."""
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class TaskNotFound(TaskStoreError):
    """Raised when a task does not exist, is gone, or belongs to another owner.

    The message never tells these cases apart, so a caller learns nothing
    about other owners' tasks.
    """

    code = INVALID_PARAMS

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task not found: {task_id!r}")
        self.task_id = task_id


class TaskAlreadyExists(TaskStoreError):
    """Raised by ``create`` when the owner already has a task with the id asked for.

    Nothing is written. Only the owner's own tasks are compared: another owner
    may use the same id, and this error never tells about them.
    """

    code = INVALID_PARAMS

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task already exists: {task_id!r}")
        self.task_id = task_id


class TaskExpired(TaskStoreError):
    """Raised by a mutation or ``get_result`` on a task whose TTL has run out."""

    code = INVALID_PARAMS

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task expired: {task_id!r}")
        self.task_id = task_id


class InvalidTransition(TaskStoreError):
    """Raised when a status change is not allowed by the state machine."""

    code = INVALID_PARAMS

    def __init__(self, task_id: str, from_status: str, to_status: str) -> None:
        super().__init__(f"task {task_id!r} cannot move from {from_status!r} to {to_status!r}")
        self.task_id = task_id
        self.from_status = from_status
        self.to_status = to_status


class NotReady(TaskStoreError):
    """Raised by ``get_result`` on a task that is not terminal yet."""

    code = INVALID_PARAMS

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id!r} has no result yet (status {status!r})")
        self.task_id = task_id
        self.status = status


class NoResult(TaskStoreError):
    """Raised by ``get_result`` and ``wait_for_result`` on a terminal task without a result.

    The task was cancelled, or it failed or completed without a result; it will
    never have one. ``status`` says which terminal status it is in.
    """

    code = INVALID_PARAMS

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(f"task {task_id!r} ended without a result (status {status!r})")
        self.task_id = task_id
        self.status = status


class WaitTimeout(TaskStoreError, TimeoutError):
    """Raised by ``wait`` and ``wait_for_result`` when the timeout ran out first.

    It is also a builtin :class:`TimeoutError`.
    """

    code = INTERNAL_ERROR

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"task {task_id!r}: nothing to return within {timeout} s")
        self.task_id = task_id
        self.timeout = timeout


class InvalidArgument(TaskStoreError):
    """Raised when an argument is malformed: a bad TTL, value, limit or cursor."""

    code = INVALID_PARAMS


class ScheduleNameTaken(InvalidArgument):
    """Raised by ``schedule`` when the name belongs to a schedule of another owner.

    Nothing is written. Names are unique per key prefix: ``unschedule`` the other one
    first. The error does not say whose it is.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule name {name!r} is taken by another owner")
        self.name = name


class VariableSizeExceeded(InvalidArgument):
    """Raised when merged variables or a result would exceed the configured size."""

    def __init__(self, limit_bytes: int, actual_bytes: int, what: str = "variables") -> None:
        super().__init__(
            f"{what} would take {actual_bytes} bytes, above the limit of {limit_bytes}"
        )
        self.limit_bytes = limit_bytes
        self.actual_bytes = actual_bytes


class AnonymousAccessDenied(TaskStoreError):
    """Raised when an anonymous owner id is used while anonymous access is off."""

    code = INVALID_PARAMS

    def __init__(self, owner_id: str) -> None:
        super().__init__(
            f"anonymous owner {owner_id!r} is not allowed (SecurityConfig.allow_anonymous)"
        )
        self.owner_id = owner_id


class ResourceExhausted(TaskStoreError):
    """Raised by ``create`` when the owner already has the maximum of tasks in progress."""

    code = INTERNAL_ERROR

    def __init__(self, owner_limit: int) -> None:
        super().__init__(f"owner already has the maximum of {owner_limit} tasks in progress")
        self.owner_limit = owner_limit


class ConcurrentModification(TaskStoreError):
    """Raised when compare-and-set retries run out under contention."""

    code = INTERNAL_ERROR

    def __init__(self, task_id: str, attempts: int) -> None:
        super().__init__(f"task {task_id!r} kept changing; gave up after {attempts} attempts")
        self.task_id = task_id
        self.attempts = attempts


class StoreUnavailable(TaskStoreError):
    """Raised when the storage backend cannot be reached or did not answer in time.

    The original exception is chained as ``__cause__``. When a write may or may
    not have been applied, ``outcome_unknown`` is true and the message says so.
    """

    code = INTERNAL_ERROR

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class ServerMisconfigured(StoreUnavailable):
    """Raised when the server is set up so that tasks could be lost, and the store refuses it.

    Only with ``StoreConfig.require_noeviction``: a server whose ``maxmemory-policy``
    is not ``noeviction`` (or cannot be read) may evict tasks silently. ``node``
    names the server, ``setting`` the setting and ``value`` what it is (None if it
    could not be read). Nothing was sent.
    """

    def __init__(self, message: str, *, node: str, setting: str, value: str | None) -> None:
        super().__init__(message)
        self.node = node
        self.setting = setting
        self.value = value


class StorageCorrupted(TaskStoreError):
    """Raised when stored bytes do not decode as a task record."""

    code = INTERNAL_ERROR


class UnsupportedFormat(TaskStoreError):
    """Raised when a stored task has a format this process cannot read or must not rewrite.

    A process reads every minor version of its own major format, ignoring fields it
    does not know, but never rewrites a task stored in a newer format than its own
    (that would drop what it does not know). ``stored`` and ``supported`` name the
    two versions.
    """

    code = INTERNAL_ERROR

    def __init__(self, task_id: str, stored: str, supported: str) -> None:
        super().__init__(
            f"task {task_id!r} is stored in format {stored or '1'}; this process "
            f"understands format {supported}: upgrade it to change this task"
        )
        self.task_id = task_id
        self.stored = stored
        self.supported = supported


LEASE_LOST_REASONS = frozenset(
    {"expired", "reclaimed", "cancelled", "completed", "failed", "missing"}
)
"""Why a lease holder's fenced write was refused (:attr:`LeaseLost.reason`)."""


class LeaseLost(TaskStoreError):
    """Raised by a lease holder's write once the lease is no longer its own; nothing was written.

    ``reason`` says why: ``"expired"`` (the lease ran out and nobody took the task
    since), ``"reclaimed"`` (another claim took the task), ``"cancelled"``,
    ``"completed"`` or ``"failed"`` (the task ended, by someone else or by an
    earlier write of this holder), ``"missing"`` (the task is gone). The holder
    should stop working on the task.
    """

    code = INVALID_PARAMS

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(f"lease on task {task_id!r} lost: {reason}")
        self.task_id = task_id
        self.reason = reason


class InvalidLeaseToken(InvalidArgument):
    """Raised when a lease's fencing token was never handed out for that task (a forged lease)."""

    def __init__(self, task_id: str, token: object) -> None:
        super().__init__(f"task {task_id!r} never had a lease with token {token!r}")
        self.task_id = task_id
        self.token = token


class PartialSubmit(TaskStoreError):
    """Raised by ``submit_many`` when some of its tasks were not submitted.

    The others were, each whole: ``results`` holds, in the order of the params
    given, the ``TaskRecord`` of each task submitted and the error of each one
    that was not (``ResourceExhausted`` at the owner's quota, ``StoreUnavailable``
    for a chunk the store did not answer, with ``outcome_unknown`` when it may
    have landed). ``submitted`` counts the records.
    """

    code = INTERNAL_ERROR

    def __init__(self, results: list[Any]) -> None:
        failed = [
            (at, result) for at, result in enumerate(results) if isinstance(result, Exception)
        ]
        first_at, first = failed[0] if failed else (0, None)
        super().__init__(
            f"{len(failed)} of {len(results)} tasks were not submitted "
            f"(the first, params[{first_at}]: {first})"
        )
        self.results = results
        self.submitted = len(results) - len(failed)
