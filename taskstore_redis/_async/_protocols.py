"""The two interfaces of the design: the task store and its storage backend."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from .._core.backend_types import (
    BackendPage,
    CasResult,
    ClaimReply,
    CoreWrite,
    Created,
    CreateOutcome,
    DeleteOutcome,
    LeasedJob,
    LeaseRef,
    ListPosition,
    MergeResult,
    NewTask,
    QueueCounts,
    RenewOutcome,
    TaskKey,
    TaskRemoval,
    VariableMerge,
    VersionedRecord,
)
from .._core.config import StoreConfig
from .._core.model import JSONValue, TaskPage, TaskRecord
from .._core.schedules import ScheduleFire, StoredSchedule
from .._core.status import TaskStatus


@runtime_checkable
class TaskStore(Protocol):
    """The operations of a task store (``config`` is a property)."""

    @property
    def config(self) -> StoreConfig:
        """The store's limits and defaults."""
        ...

    async def create(
        self,
        request_method: str,
        ttl_ms: int | None = None,
        *,
        owner_id: str,
        task_id: str | None = None,
    ) -> TaskRecord:
        """Create a task in status ``working`` for ``owner_id`` (with ``task_id`` if given)."""
        ...

    async def get(self, task_id: str, *, owner_id: str) -> TaskRecord:
        """Return a task of ``owner_id``."""
        ...

    async def update_status(
        self,
        task_id: str,
        status: TaskStatus | str,
        status_message: str | None = None,
        *,
        owner_id: str,
    ) -> TaskRecord:
        """Move a task to another status, as the state machine allows."""
        ...

    async def set_variables(
        self, task_id: str, variables: dict[str, Any], *, owner_id: str
    ) -> TaskRecord:
        """Merge variables into a task's; a None value deletes the key."""
        ...

    async def set_result(self, task_id: str, result: JSONValue, *, owner_id: str) -> None:
        """Attach a result to a task."""
        ...

    async def get_result(self, task_id: str, *, owner_id: str) -> JSONValue:
        """Return the result of a terminal task."""
        ...

    async def complete_with_result(
        self,
        task_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        result: JSONValue,
        *,
        owner_id: str,
    ) -> TaskRecord:
        """Move a task to a terminal status and attach its result in one write."""
        ...

    async def list(
        self, *, owner_id: str, cursor: str | None = None, limit: int | None = None
    ) -> TaskPage:
        """Return one page of the owner's tasks, newest first."""
        ...

    async def cancel(self, task_id: str, *, owner_id: str) -> TaskRecord:
        """Move a task to ``cancelled``."""
        ...

    async def cleanup_expired(self) -> int:
        """Purge expired tasks now; return how many were purged."""
        ...

    async def wait(
        self,
        task_id: str,
        *,
        owner_id: str,
        after_version: int | None = None,
        until_terminal: bool = False,
        timeout: float | None = None,
    ) -> TaskRecord:
        """Wait for a task's version to pass ``after_version``, or for it to be terminal."""
        ...

    async def wait_for_result(
        self, task_id: str, *, owner_id: str, timeout: float | None = None
    ) -> JSONValue:
        """Wait until the task is terminal, then return its result."""
        ...

    async def delete(self, task_id: str, *, owner_id: str) -> bool:
        """Remove a task of ``owner_id`` and its index entries; False if there was none."""
        ...

    async def set_status_message(
        self, task_id: str, status_message: str | None, *, owner_id: str
    ) -> TaskRecord:
        """Replace a task's status message, keeping its status."""
        ...


class TaskWatch(Protocol):
    """A subscription to the changes of one record, from ``StorageBackend.watch``.

    Entering returns once the subscription is in place: any write or removal of
    the record that lands afterwards makes ``wait`` return. ``wait`` may also
    return without a change (after a reconnection, say): it only means "read
    again". Leaving releases the subscription, even when cancelled.
    """

    async def __aenter__(self) -> TaskWatch:
        """Subscribe; return once the subscription is confirmed."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unsubscribe."""
        ...

    async def wait(self, timeout: float | None) -> None:
        """Return after a notice (at once if one came since the last return) or ``timeout`` s."""
        ...


@runtime_checkable
class StorageBackend(Protocol):
    """A versioned key-value store of task records, with no domain rules.

    It never parses the bytes it stores and never judges a transition. Each call
    is one atomic step (one round trip on Redis). Connection, timeout and OS
    errors surface as ``StoreUnavailable``.
    """

    async def get(self, key: TaskKey) -> VersionedRecord | None:
        """Return the record at ``key``, or None if there is none (or it is past purge time)."""
        ...

    async def get_many(self, keys: list[TaskKey]) -> list[VersionedRecord | None]:
        """The record at each key, or None, in one round trip."""
        ...

    async def create(self, task: NewTask) -> Created:
        """Write a new record with version 1 (core version 1) and index it under its owner.

        Refuse, writing nothing, when the key exists or when the owner already
        has ``task.max_live`` tasks that are neither terminal nor expired at
        ``task.now_ms``. The record disappears by itself at ``task.purge_at_ms``.
        A job with a dedup key held by a live task of the owner on its queue creates
        nothing: the reply names that task (``Duplicate``), debounced when asked.
        """
        ...

    async def compare_and_set(self, write: CoreWrite) -> CasResult:
        """Replace the core record if its core version is ``write.expected_core_version``.

        On success both versions go up by one and the record as written comes
        back; a terminal write stops the task counting against the quota. On a
        conflict nothing is written and the current record (or None) comes back.
        Variable merges never change the core version.
        """
        ...

    async def merge_variables(self, merge: VariableMerge) -> MergeResult:
        """Set and delete the variables named, in one atomic step with no version check.

        The version goes up by one; merges of distinct keys never conflict, on the
        same key the last one wins. Refuses, writing nothing, as ``VariableMerge`` says.
        """
        ...

    async def list_page(self, owner_id: str, after: ListPosition | None, limit: int) -> BackendPage:
        """Return up to ``limit`` of the owner's records, newest first, after ``after``."""
        ...

    async def in_progress(self, owner_id: str, now_ms: int) -> int:
        """Count the owner's records neither terminal nor expired at ``now_ms``.

        What ``create`` holds against ``NewTask.max_live``.
        """
        ...

    async def purge_expired(self, now_ms: int) -> int:
        """Delete every record whose ``expires_at_ms`` is at or before ``now_ms``; count them."""
        ...

    async def delete(self, removal: TaskRemoval) -> DeleteOutcome:
        """Remove the record at ``removal.key`` and its index entries, in one atomic step.

        Only if its core record still holds ``removal.data`` (else CHANGED, nothing
        touched); its waiters are told, as when a purge removes it.
        """
        ...

    def watch(self, key: TaskKey) -> TaskWatch:
        """A subscription to the changes of the record at ``key`` (see :class:`TaskWatch`)."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...


class QueueWatch(Protocol):
    """A subscription to the "maybe work" notices of every shard of one queue.

    Entering returns once each shard's subscription is confirmed or its node could
    not be reached (``live`` tells which); from then on every write that makes work
    claimable on a shard (a submit, a release, a recovery) calls the ``on_notice``
    given to ``QueueBackend.queue_watch`` with that shard, from any thread; so does
    a subscription confirmed late, or renewed after a lost connection, so a claimer
    that went on without it looks again.
    """

    async def __aenter__(self) -> QueueWatch:
        """Subscribe; return once every shard's subscription is confirmed or was tried."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unsubscribe."""
        ...

    def live(self) -> bool:
        """Whether every shard's subscription is confirmed now (no notice can be missed)."""
        ...


@runtime_checkable
class QueueBackend(StorageBackend, Protocol):
    """A storage backend with work queues (see ``GenericTaskStore.submit`` and ``claim``).

    ``create`` also enqueues a task whose ``NewTask.job`` is set, in the same
    atomic step; ``compare_and_set`` and ``merge_variables`` honour a ``fence``.
    A queue is spread over ``queue_shards()`` shards; each call below is one
    atomic step on one shard (one round trip), except where it says otherwise.
    """

    def queue_shards(self) -> int:
        """How many shards every queue is spread over."""
        ...

    async def create_many(self, tasks: list[NewTask]) -> list[Created]:
        """Create each task as ``create`` does, each on its own; one round trip per node.

        An outcome per task, in order. Raises ``StoreUnavailable`` (``outcome_unknown``
        when some may have landed) when the store does not answer.
        """
        ...

    async def claim(
        self, queue: str, shard: int, count: int, lease_ms: int, worker_id: str, batch: int
    ) -> ClaimReply:
        """Recover up to ``batch`` expired leases, then lease up to ``count`` ready tasks."""
        ...

    async def complete_and_claim(
        self,
        queue: str,
        shard: int,
        writes: list[CoreWrite],
        count: int,
        lease_ms: int,
        worker_id: str,
        batch: int,
    ) -> tuple[list[CasResult], ClaimReply]:
        """Apply lease holders' terminal writes on one shard, then claim as ``claim`` does.

        One atomic step, a worker's round trip: each write (fenced on ``queue``, of a
        task of ``shard``, all made at one time in one format) is judged on its own, as
        ``compare_and_set`` would, and has its outcome, in order (an applied one may
        leave ``current`` None); then up to ``count`` tasks are leased (0: none, and no
        recovery). Never sent again by the backend: a reply that is lost leaves its
        outcome unknown (``StoreUnavailable``).
        """
        ...

    async def recover(self, queue: str, shard: int, batch: int) -> ClaimReply:
        """Recover up to ``batch`` expired leases of one shard, claiming nothing."""
        ...

    async def renew(self, leases: list[LeaseRef], lease_ms: int) -> list[RenewOutcome]:
        """Extend each lease still held; one round trip per node, an outcome per lease."""
        ...

    async def release(
        self, lease: LeaseRef, delay_ms: int, *, count_attempt: bool = True
    ) -> tuple[str, VersionedRecord | None]:
        """Hand a held lease back; ("", the task now) or (why refused, None).

        ``count_attempt`` False hands the lease's attempt back (never below 0), in the
        same atomic step; a resend of an applied release hands nothing back again.
        """
        ...

    async def queue_due(self, queue: str, shards: list[int]) -> list[float | None]:
        """Per shard, ms until it needs a claim (0: now; None: empty); one round trip per node."""
        ...

    async def queue_counts(self, queue: str) -> QueueCounts:
        """The queue's numbers, summed over its shards."""
        ...

    async def queue_leases(self, queue: str, limit: int) -> list[LeasedJob]:
        """Up to ``limit`` of the queue's leases per shard, soonest deadline first."""
        ...

    async def queue_names(self) -> list[str]:
        """Every queue a task was submitted to (or that was paused)."""
        ...

    async def set_limits(self, queue: str, group: str | None, limits: dict[str, float]) -> None:
        """Set the limits of ``queue`` (or of ``group`` on it) on every shard.

        ``limits`` by name: ``c`` most leases held at once, ``r`` claims per second,
        ``b`` the bucket's size; a name left out is removed. One round trip per node.
        """
        ...

    async def queue_limits(self, queue: str) -> dict[str, float]:
        """The limits of ``queue`` as ``set_limits`` keeps them.

        ``c``, ``r``, ``b`` for the queue, ``c:<group>``... for a group (as given).
        """
        ...

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause (``paused``) or resume the queue on every shard; the same again changes nothing.

        A paused shard leases nothing; leases held go on. A resume tells the queue's
        watchers. One round trip per node.
        """
        ...

    def queue_watch(self, queue: str, on_notice: Callable[[int], None]) -> QueueWatch:
        """A subscription to the queue's shards (see :class:`QueueWatch`)."""
        ...


__all__ = [
    "BackendPage",
    "CasResult",
    "CoreWrite",
    "CreateOutcome",
    "DeleteOutcome",
    "ListPosition",
    "MergeResult",
    "NewTask",
    "QueueBackend",
    "QueueWatch",
    "StorageBackend",
    "TaskKey",
    "TaskRemoval",
    "TaskStore",
    "TaskWatch",
    "VariableMerge",
]


@runtime_checkable
class ScheduleBackend(QueueBackend, Protocol):
    """A QueueBackend that also keeps schedules (``GenericTaskStore.schedule``).

    A schedule lives with its owner's tasks, so one atomic step fires it and creates its
    task; a names table of its own keeps names unique. Times are the backend's clock.
    """

    async def server_time_ms(self) -> int:
        """The backend's clock (the server's, for Redis), in ms."""
        ...

    async def schedule_name(self, name: str, owner_id: str, *, remove: bool) -> str | None:
        """Claim ``name`` for the owner if free (or give it up, ``remove``); its holder after."""
        ...

    async def schedule_owner(self, name: str) -> str | None:
        """The owner holding the schedule name, or None."""
        ...

    async def put_schedule(
        self, owner_id: str, name: str, spec: bytes, next_ms: int
    ) -> StoredSchedule:
        """Create or update a schedule (the same spec again changes nothing); wake schedulers."""
        ...

    async def remove_schedule(self, owner_id: str, name: str) -> bool:
        """Delete a schedule; whether there was one. Wakes schedulers."""
        ...

    async def due_schedules(
        self, until_ms: float, limit: int
    ) -> tuple[list[StoredSchedule], float | None]:
        """Up to ``limit`` schedules per shard due by ``until_ms``, and the earliest next time."""
        ...

    async def fire_schedule(
        self, owner_id: str, stored: StoredSchedule, step: ScheduleFire, task: NewTask | None
    ) -> Created | None:
        """One step of a schedule, its task created in the same atomic step.

        None: the schedule is no longer as read (another process fired it, it changed) or
        ``step.due_at_ms`` has not come; nothing written. Else what creating the task
        gave (``CREATED`` when there was none to create).
        """
        ...

    def schedule_watch(self, on_notice: Callable[[int], None]) -> QueueWatch:
        """Call ``on_notice(shard)`` whenever a schedule of a shard changes."""
        ...
