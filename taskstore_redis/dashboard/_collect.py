"""What every page shows, read once per interval for all viewers.

A :class:`Collector` keeps one snapshot of the store's queues, leases, limits,
recent failures and owners. A page asks for it; the first request after the
snapshot is ``interval`` seconds old reads the store again, and every request
meanwhile (any number of open pages) gets the same snapshot: the Redis cost is
one refresh per interval at most, whatever the number of viewers, and none while
nobody looks.

Each refresh reads, per queue, ``queue_stats``, ``queue_leases`` (``LEASES_PER_QUEUE``
at most) and ``limits``, then ``get`` for at most ``LOOKUPS_PER_REFRESH`` of the tasks
that left the leased set since the previous refresh (those found ``failed`` are the
recent failures), and ``tasks_in_progress`` for at most ``OWNERS_KEPT`` owners.

Throughput history: the store keeps, per queue, running totals of completed and
failed tasks (the ``queue_stats`` counters), not a history. The collector keeps
the totals it read at each refresh of the last hour and spreads each change
evenly over the time between its two readings, minute by minute; a minute that no
two readings cover has no figure (the dashboard was not watched then, or had not
started).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from .._async._store import GenericTaskStore
from .._core.errors import TaskNotFound
from .._core.model import LeaseInfo, QueueLimits, QueueStats, TaskRecord
from .._core.status import TaskStatus

LEASES_PER_QUEUE = 100
"""Leases read per queue at each refresh."""
LOOKUPS_PER_REFRESH = 50
"""Tasks that left the leased set looked up per refresh, to find the failures."""
FAILURES_KEPT = 200
"""Recent failures kept (the newest)."""
OWNERS_KEPT = 50
"""Owners whose tasks in progress are read at each refresh (the most recently seen)."""
HISTORY_MINUTES = 60
"""Minutes of throughput history drawn."""

Key = tuple[str, str]


@dataclass(frozen=True)
class Failure:
    """A task seen leased at one refresh and ``failed`` at a later one."""

    queue: str
    task_id: str
    owner_id: str
    worker_id: str | None
    attempt: int
    status_message: str
    error: object
    """The result's ``error`` member when the result is an object with one, else the result."""
    failed_at: datetime


@dataclass(frozen=True)
class Held:
    """A lease and its queue."""

    queue: str
    lease: LeaseInfo


@dataclass(frozen=True)
class QueueView:
    """A queue as the queues page shows it."""

    stats: QueueStats
    limits: QueueLimits
    leases_listed: int
    completed_per_minute: list[float | None]
    failed_per_minute: list[float | None]
    """Oldest minute first, ``HISTORY_MINUTES`` of them, the current one last."""


@dataclass(frozen=True)
class OwnerView:
    """An owner's tasks in progress against the store's quota."""

    owner_id: str
    in_progress: int
    leased: int


@dataclass(frozen=True)
class Snapshot:
    """Everything the pages show, read at ``at``."""

    at: datetime
    queues: list[QueueView]
    workers: dict[str, list[Held]]
    """Worker id ("" for none) to the leases it holds, soonest deadline first."""
    failures: list[Failure]
    """Newest first."""
    owners: list[OwnerView]
    quota: int | None
    refreshes: int
    error: str | None = None
    """Why the latest refresh failed, while it does (the snapshot is the last good one)."""


@dataclass
class _History:
    """Readings of a queue's completed and failed totals over the last hour."""

    readings: deque[tuple[float, int, int]] = field(default_factory=deque)

    def add(self, at: float, completed: int, failed: int) -> None:
        self.readings.append((at, completed, failed))
        horizon = at - (HISTORY_MINUTES + 1) * 60
        while len(self.readings) > 2 and self.readings[1][0] <= horizon:
            self.readings.popleft()

    def per_minute(self, now: float) -> tuple[list[float | None], list[float | None]]:
        """Completed and failed per minute, oldest first; None for a minute without readings."""
        end = (math.floor(now / 60) + 1) * 60
        start = end - HISTORY_MINUTES * 60
        completed: list[float | None] = [None] * HISTORY_MINUTES
        failed: list[float | None] = [None] * HISTORY_MINUTES
        pairs = zip(list(self.readings), list(self.readings)[1:], strict=False)
        for (t0, c0, f0), (t1, c1, f1) in pairs:
            span = t1 - t0
            if span <= 0 or t1 <= start:
                continue
            done, lost = max(0, c1 - c0), max(0, f1 - f0)
            first = max(0, int((t0 - start) // 60))
            last = min(HISTORY_MINUTES - 1, int((t1 - start) // 60))
            for minute in range(first, last + 1):
                lo = max(t0, start + minute * 60)
                hi = min(t1, start + (minute + 1) * 60)
                if hi <= lo:
                    continue
                share = (hi - lo) / span
                completed[minute] = (completed[minute] or 0.0) + done * share
                failed[minute] = (failed[minute] or 0.0) + lost * share
        return completed, failed


class Collector:
    """One shared, bounded read of the store per ``interval`` for every viewer."""

    def __init__(self, store: GenericTaskStore, interval: float = 2.0) -> None:
        """Read ``store`` at most once per ``interval`` seconds."""
        self.store = store
        self.interval = interval
        self._snapshot: Snapshot | None = None
        self._read_at = -math.inf
        self._lock: anyio.Lock | None = None
        self._held: dict[Key, Held] = {}
        self._history: dict[str, _History] = {}
        self._failures: deque[Failure] = deque(maxlen=FAILURES_KEPT)
        self._owners: dict[str, float] = {}
        self.refreshes = 0
        """How many times the store was read (one refresh per interval at most)."""

    def note_owner(self, owner_id: str) -> None:
        """Follow ``owner_id`` on the owners page (a task of it was looked at)."""
        self._owners[owner_id] = time.monotonic()
        self._trim_owners()

    async def snapshot(self) -> Snapshot:
        """The snapshot, read again first if it is ``interval`` old (one reader at a time)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._read_at >= self.interval:
                try:
                    self._snapshot = await self._refresh()
                except Exception as exc:  # the server away for a moment: say so, go on
                    if self._snapshot is None:
                        raise
                    why = f"{type(exc).__name__}: {exc}"
                    self._snapshot = dataclasses.replace(self._snapshot, error=why)
                self._read_at = time.monotonic()
            return self._snapshot

    async def _refresh(self) -> Snapshot:
        store = self.store
        names = await store.queues()
        stats = [await store.queue_stats(name) for name in names]
        leases = {name: await store.queue_leases(name, limit=LEASES_PER_QUEUE) for name in names}
        limits = {name: await store.limits(name) for name in names}
        now = datetime.now(UTC)
        at = time.time()
        held = {
            (lease.owner_id, lease.task_id): Held(queue, lease)
            for queue, listed in leases.items()
            for lease in listed
        }
        await self._find_failures(held, now)
        self._held = held
        seen = time.monotonic()
        for one in held.values():
            self._owners[one.lease.owner_id] = seen
        self._trim_owners()
        queues = []
        for read in stats:
            history = self._history.setdefault(read.queue, _History())
            history.add(at, read.completed, read.failed)
            completed, failed = history.per_minute(at)
            queues.append(
                QueueView(read, limits[read.queue], len(leases[read.queue]), completed, failed)
            )
        workers: dict[str, list[Held]] = {}
        for one in sorted(held.values(), key=lambda one: one.lease.expires_at):
            workers.setdefault(one.lease.worker_id or "", []).append(one)
        leased_by_owner: dict[str, int] = {}
        for owner_id, _ in held:
            leased_by_owner[owner_id] = leased_by_owner.get(owner_id, 0) + 1
        owners = [
            OwnerView(
                owner_id,
                await store.tasks_in_progress(owner_id=owner_id),
                leased_by_owner.get(owner_id, 0),
            )
            for owner_id in sorted(self._owners)
        ]
        self.refreshes += 1
        return Snapshot(
            at=now,
            queues=queues,
            workers=dict(sorted(workers.items())),
            failures=list(reversed(self._failures)),
            owners=owners,
            quota=store.security.max_tasks_per_owner,
            refreshes=self.refreshes,
        )

    async def _find_failures(self, held: dict[Key, Held], now: datetime) -> None:
        gone = [key for key in self._held if key not in held][:LOOKUPS_PER_REFRESH]
        for owner_id, task_id in gone:
            was = self._held[(owner_id, task_id)]
            try:
                record = await self.store.get(task_id, owner_id=owner_id)
            except TaskNotFound:
                continue  # deleted or purged meanwhile
            if record.task.status is TaskStatus.FAILED:
                self._failures.append(failure_of(record, was, now))
                self._owners[owner_id] = time.monotonic()

    def _trim_owners(self) -> None:
        if len(self._owners) > OWNERS_KEPT:
            kept = sorted(self._owners.items(), key=lambda item: item[1])[-OWNERS_KEPT:]
            self._owners = dict(kept)


def failure_of(record: TaskRecord, was: Held, now: datetime) -> Failure:
    """A failed task as the failures page lists it."""
    job = record.job
    result = record.result
    error = result.get("error", result) if isinstance(result, dict) else result
    return Failure(
        queue=was.queue,
        task_id=record.task.task_id,
        owner_id=record.owner_id,
        worker_id=job.worker_id if job is not None else was.lease.worker_id,
        attempt=job.attempt if job is not None else was.lease.attempt,
        status_message=record.task.status_message or "",
        error=error,
        failed_at=datetime.fromisoformat(record.task.last_updated_at.replace("Z", "+00:00"))
        if record.task.last_updated_at
        else now,
    )
