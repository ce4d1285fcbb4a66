"""InMemoryBackend: the embedded default backend, for one process."""

from __future__ import annotations

from collections.abc import Callable

from .._core.backend_types import (
    BackendPage,
    CasResult,
    ClaimReply,
    CoreWrite,
    Created,
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
from .._core.memory_schedules import MemoryScheduleStorage
from .._core.schedules import ScheduleFire, StoredSchedule
from .._runtime.fanout import Fanout
from ._watch import FanoutWatch, QueueFanoutWatch


class InMemoryBackend:
    """A StorageBackend that keeps records in this process's memory.

    Safe to share between the threads and coroutines of one process; each
    process that builds one has its own, separate data.
    """

    def __init__(self) -> None:
        """Start with no records."""
        self._storage = MemoryScheduleStorage()
        self._fanout = Fanout()
        self._storage.on_change = self._fanout.notify
        self._storage.on_queue = self._notify_queue
        self._storage.on_schedules = self._notify_schedules

    async def get(self, key: TaskKey) -> VersionedRecord | None:
        """Return the record at ``key``, or None."""
        return self._storage.get(key)

    async def get_many(self, keys: list[TaskKey]) -> list[VersionedRecord | None]:
        """Return the record at each key, or None."""
        return [self._storage.get(key) for key in keys]

    async def create(self, task: NewTask) -> Created:
        """Write a new record with version 1, within the owner's quota."""
        return self._storage.create(task)

    async def compare_and_set(self, write: CoreWrite) -> CasResult:
        """Replace the core record if its core version is the expected one."""
        return self._storage.compare_and_set(write)

    async def merge_variables(self, merge: VariableMerge) -> MergeResult:
        """Set and delete the variables named, with no version check."""
        return self._storage.merge_variables(merge)

    async def list_page(self, owner_id: str, after: ListPosition | None, limit: int) -> BackendPage:
        """Return up to ``limit`` of the owner's records, newest first, after ``after``."""
        return self._storage.list_page(owner_id, after, limit)

    async def in_progress(self, owner_id: str, now_ms: int) -> int:
        """The owner's tasks neither terminal nor expired at ``now_ms``."""
        return self._storage.in_progress(owner_id, now_ms)

    async def purge_expired(self, now_ms: int) -> int:
        """Delete every record whose TTL ran out at or before ``now_ms``."""
        return self._storage.purge_expired(now_ms)

    async def delete(self, removal: TaskRemoval) -> DeleteOutcome:
        """Remove the record and its index entries if its core is still ``removal.data``."""
        return self._storage.delete(removal)

    def watch(self, key: TaskKey) -> FanoutWatch:
        """Watch one record's changes: every write or removal of ``key`` wakes its waiters."""
        return FanoutWatch(self._fanout, key)

    def watch_registrations(self) -> int:
        """How many waiters are registered now (for tests and diagnostics)."""
        return self._fanout.registrations()

    # --- work queues (one shard per queue: the whole process) ------------------------------

    def queue_shards(self) -> int:
        """One: a queue in memory is not spread out."""
        return 1

    async def claim(
        self, queue: str, shard: int, count: int, lease_ms: int, worker_id: str, batch: int
    ) -> ClaimReply:
        """Recover expired leases (bounded), then lease up to ``count`` ready tasks."""
        return self._storage.claim(queue, count, lease_ms, worker_id, batch)

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
        """Apply lease holders' terminal writes, then claim up to ``count``: one step."""
        return self._storage.complete_and_claim(queue, writes, count, lease_ms, worker_id, batch)

    async def recover(self, queue: str, shard: int, batch: int) -> ClaimReply:
        """Recover up to ``batch`` expired leases, claiming nothing."""
        return self._storage.recover(queue, batch)

    async def renew(self, leases: list[LeaseRef], lease_ms: int) -> list[RenewOutcome]:
        """Extend each lease still held."""
        return self._storage.renew(leases, lease_ms)

    async def release(
        self, lease: LeaseRef, delay_ms: int, *, count_attempt: bool = True
    ) -> tuple[str, VersionedRecord | None]:
        """Hand a held lease back, claimable again after ``delay_ms``."""
        return self._storage.release(lease, delay_ms, count_attempt=count_attempt)

    async def queue_due(self, queue: str, shards: list[int]) -> list[float | None]:
        """Ms until the queue needs a claim (0: now; None: empty), for its one shard."""
        return [self._storage.queue_due(queue) for _ in shards]

    async def queue_counts(self, queue: str) -> QueueCounts:
        """The queue's numbers now."""
        return self._storage.queue_counts(queue)

    async def queue_leases(self, queue: str, limit: int) -> list[LeasedJob]:
        """Up to ``limit`` of the queue's leases, soonest deadline first."""
        return self._storage.queue_leases(queue, limit)

    async def queue_names(self) -> list[str]:
        """Every queue a task was submitted to (or that was paused)."""
        return self._storage.queue_names()

    async def create_many(self, tasks: list[NewTask]) -> list[Created]:
        """Create each task as ``create`` does."""
        return [self._storage.create(task) for task in tasks]

    async def set_limits(self, queue: str, group: str | None, limits: dict[str, float]) -> None:
        """Set the limits of the queue or of ``group`` (a name left out is removed)."""
        self._storage.set_limits(queue, group, limits)

    async def queue_limits(self, queue: str) -> dict[str, float]:
        """The queue's limits, as ``set_limits`` keeps them."""
        return self._storage.queue_limits(queue)

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume the queue (a resume tells its watchers)."""
        self._storage.set_paused(queue, paused)

    def queue_watch(self, queue: str, on_notice: Callable[[int], None]) -> QueueFanoutWatch:
        """Call ``on_notice(0)`` whenever the queue may have work."""
        return QueueFanoutWatch(self._fanout, ("queue", queue), on_notice)

    def _notify_queue(self, queue: str) -> None:
        self._fanout.notify(("queue", queue))

    # --- schedules (one shard: the whole process) -------------------------------------------

    async def server_time_ms(self) -> int:
        """The clock of this process, in ms."""
        return self._storage.server_time_ms()

    async def schedule_name(self, name: str, owner_id: str, *, remove: bool) -> str | None:
        """Claim the name for the owner if free (or give it up); its holder after."""
        return self._storage.schedule_name(name, owner_id, remove=remove)

    async def schedule_owner(self, name: str) -> str | None:
        """The owner holding the schedule name, or None."""
        return self._storage.schedule_owner(name)

    async def put_schedule(
        self, owner_id: str, name: str, spec: bytes, next_ms: int
    ) -> StoredSchedule:
        """Create or update a schedule (the same spec again changes nothing)."""
        return self._storage.put_schedule(owner_id, name, spec, next_ms)

    async def remove_schedule(self, owner_id: str, name: str) -> bool:
        """Delete a schedule; whether there was one."""
        return self._storage.remove_schedule(owner_id, name)

    async def due_schedules(
        self, until_ms: float, limit: int
    ) -> tuple[list[StoredSchedule], float | None]:
        """Up to ``limit`` schedules due by ``until_ms``, and the earliest next time."""
        return self._storage.due_schedules(until_ms, limit)

    async def fire_schedule(
        self, owner_id: str, stored: StoredSchedule, step: ScheduleFire, task: NewTask | None
    ) -> Created | None:
        """One step of a schedule, its task created in the same step."""
        return self._storage.fire_schedule(stored, step, task)

    def schedule_watch(self, on_notice: Callable[[int], None]) -> QueueFanoutWatch:
        """Call ``on_notice(0)`` whenever a schedule changes."""
        return QueueFanoutWatch(self._fanout, ("schedules",), on_notice)

    def _notify_schedules(self) -> None:
        self._fanout.notify(("schedules",))

    async def aclose(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""
