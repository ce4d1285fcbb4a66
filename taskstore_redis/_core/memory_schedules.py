"""The in-memory engine's schedules: the same semantics as the Redis schedule scripts.

One shard (the whole process): the schedules by name, and the names' owners. Every step
runs under the engine's one lock, so firing a schedule and creating its task is one
atomic step, as ``lua/fire.lua`` is. The clock is :func:`taskstore_redis._core.clock.now_ms`,
looked up at each call, so a test may replace it.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from . import clock
from .backend_types import Created, CreateOutcome, NewTask
from .memory_queues import MemoryQueueStorage
from .schedules import ScheduleFire, StoredSchedule


def _ignore() -> None:
    """The default ``on_schedules``: nobody listens."""


class MemoryScheduleStorage(MemoryQueueStorage):
    """The in-memory engine with work queues and schedules (see the module doc)."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__()
        self._schedules: dict[str, StoredSchedule] = {}
        self._schedule_names: dict[str, str] = {}
        self.on_schedules: Callable[[], None] = _ignore
        """Called, under the lock, when a schedule was created, changed or deleted."""

    def server_time_ms(self) -> int:
        """The clock of this process."""
        return clock.now_ms()

    def schedule_name(self, name: str, owner_id: str, *, remove: bool) -> str | None:
        """Claim the name if free, or give it up if the owner holds it; the holder after."""
        with self._lock:
            holder = self._schedule_names.get(name)
            if remove and holder == owner_id:
                del self._schedule_names[name]
            elif not remove and holder is None:
                self._schedule_names[name] = owner_id
            return self._schedule_names.get(name)

    def schedule_owner(self, name: str) -> str | None:
        """The owner holding the name, or None."""
        with self._lock:
            return self._schedule_names.get(name)

    def put_schedule(self, owner_id: str, name: str, spec: bytes, next_ms: int) -> StoredSchedule:
        """Create or update the schedule; the same spec again changes nothing."""
        with self._lock:
            stored = self._schedules.get(name)
            if stored is not None and stored.spec == spec:
                return stored
            if stored is None:
                stored = StoredSchedule(name=name, spec=spec, next_ms=next_ms, version=1)
            else:
                stored = msgspec.structs.replace(
                    stored, spec=spec, next_ms=next_ms, version=stored.version + 1
                )
            self._schedules[name] = stored
            self.on_schedules()
            return stored

    def remove_schedule(self, owner_id: str, name: str) -> bool:
        """Delete the schedule; whether there was one."""
        with self._lock:
            if self._schedules.pop(name, None) is None:
                return False
            self.on_schedules()
            return True

    def due_schedules(
        self, until_ms: float, limit: int
    ) -> tuple[list[StoredSchedule], float | None]:
        """Up to ``limit`` schedules due by ``until_ms``, soonest first, and the earliest time."""
        with self._lock:
            ordered = sorted(self._schedules.values(), key=lambda s: (s.next_ms, s.name))
        earliest = float(ordered[0].next_ms) if ordered else None
        return [s for s in ordered if s.next_ms <= until_ms][:limit], earliest

    def fire_schedule(
        self, stored: StoredSchedule, step: ScheduleFire, task: NewTask | None
    ) -> Created | None:
        """One step of the schedule, its task created in the same step (see lua/fire.lua)."""
        with self._lock:
            current = self._schedules.get(stored.name)
            if (
                current is None
                or (current.next_ms, current.version) != (stored.next_ms, stored.version)
                or step.due_at_ms > clock.now_ms()
            ):
                return None
            current = msgspec.structs.replace(current, next_ms=step.next_ms)
            outcome: Created = CreateOutcome.CREATED
            if task is not None:
                outcome = self.create(task)
                if outcome is CreateOutcome.CREATED:
                    current = msgspec.structs.replace(
                        current, last_ms=step.tick_ms, last_task_id=task.key.task_id
                    )
            self._schedules[stored.name] = current
            return outcome
