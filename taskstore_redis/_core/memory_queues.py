"""The in-memory engine's work queues: the same semantics as the Redis queue scripts.

One shard per queue (the whole process is one place): a ready set per priority
ordered by ready-at time (delayed tasks included), a leased set ordered by lease
deadline, counters, and whether the queue is paused. A task's queue state lives
next to its record (``_Entry.job``) and changes under the engine's one lock,
together with the record, so a fenced write checks the lease and writes in one
atomic step. Times are this process's clock.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Callable, Iterator

import msgspec

from .backend_types import (
    LOST_RETRY_MS,
    CasResult,
    ClaimedJob,
    ClaimReply,
    CoreWrite,
    Created,
    CreateOutcome,
    Duplicate,
    Fence,
    LeasedJob,
    LeaseRef,
    LostJob,
    MergeOutcome,
    MergeResult,
    MissingParent,
    NewJob,
    NewTask,
    QueueCounts,
    RenewOutcome,
    StoredJob,
    TaskKey,
    VariableMerge,
    VersionedRecord,
)
from .clock import now_ms
from .memory_engine import MemoryStorage, _Entry

_ORDER = itertools.count()


class _ZSet:
    """Members ordered by score, ties by insertion: a sorted set like Redis's."""

    def __init__(self) -> None:
        self._at: dict[TaskKey, tuple[float, int]] = {}
        self._sorted: list[tuple[float, int, TaskKey]] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, key: TaskKey, score: float) -> None:
        self.remove(key)
        order = next(_ORDER)
        self._at[key] = (score, order)
        bisect.insort(self._sorted, (score, order, key))

    def remove(self, key: TaskKey) -> None:
        place = self._at.pop(key, None)
        if place is not None:
            del self._sorted[bisect.bisect_left(self._sorted, place)]

    def due(self, now: float, limit: int) -> list[TaskKey]:
        """Up to ``limit`` members scored at or before ``now``, lowest first."""
        found: list[TaskKey] = []
        for score, _, key in self._sorted:
            if score > now or len(found) >= limit:
                break
            found.append(key)
        return found

    def first(self) -> float | None:
        return self._sorted[0][0] if self._sorted else None

    def count_until(self, now: float) -> int:
        return bisect.bisect_right(self._sorted, (now, float("inf")))

    def __iter__(self) -> Iterator[TaskKey]:
        return iter(list(self._at))


class _Ready:
    """A queue's queued tasks: those claimable now in claim order, the others by ready time.

    Claim order is the Redis scripts' (lua/includes/queue.lua): priority first, then
    start-time fair queuing among task groups. A task entering the claimable ones is
    tagged one past its group's last tag, or one past the last claimed tag if later;
    claims take the lowest tag of the highest priority.
    """

    def __init__(self) -> None:
        self._sets = [_ZSet() for _ in range(10)]
        """Per priority, the claimable tasks by tag."""
        self._tagged: dict[TaskKey, tuple[int, int, str]] = {}
        """A claimable task's priority, tag and group."""
        self.waiting = _ZSet()
        """The tasks claimable later, by ready-at time."""
        self._waiting: dict[TaskKey, tuple[int, str]] = {}
        self._last: dict[str, int] = {}
        """A group's last tag."""
        self._claimed = 0
        """The last claimed tag."""
        self._held: dict[str, dict[TaskKey, tuple[int, int]]] = {}
        """A group at its limit: its tasks a claim met, with their priority and tag."""
        self._held_in: dict[TaskKey, str] = {}
        self.wake: dict[str, float] = {}
        """A held group: when to look again (inf: when one of its leases ends)."""

    def __len__(self) -> int:
        return len(self._tagged) + len(self._waiting) + len(self._held_in)

    def hold(self, key: TaskKey, wake: float) -> None:
        """Set a claimable task of a group at its limit aside, in its turn, until ``wake``."""
        priority, tag, group = self._tagged.pop(key)
        self._sets[priority].remove(key)
        self._held.setdefault(group, {})[key] = (priority, tag)
        self._held_in[key] = group
        self.wake[group] = wake

    def unhold(self, now: float) -> None:
        """Put the tasks of every held group due at ``now`` back, in their turns."""
        for group, at in list(self.wake.items()):
            if at <= now:
                del self.wake[group]
                for key, (priority, tag) in self._held.pop(group, {}).items():
                    del self._held_in[key]
                    self._tagged[key] = (priority, tag, group)
                    self._sets[priority].add(key, tag)

    def lease_ended(self, group: str) -> None:
        """A lease of ``group`` ended: held until then, it is due."""
        if self.wake.get(group) == float("inf"):
            self.wake[group] = 0.0

    def look_again(self) -> None:
        """Every held group is due (its limits changed)."""
        for group in self.wake:
            self.wake[group] = 0.0

    def group_of(self, key: TaskKey) -> str | None:
        """The group of a claimable task."""
        tagged = self._tagged.get(key)
        return None if tagged is None else tagged[2]

    def add(self, key: TaskKey, ready_at: float, priority: int, group: str, now: float) -> None:
        """Queue a task: claimable now (tagged) if ``ready_at`` is not after ``now``."""
        self.remove(key)
        if ready_at > now:
            self.waiting.add(key, ready_at)
            self._waiting[key] = (priority, group)
            return
        tag = max(self._last.get(group, 0), self._claimed) + 1
        self._last[group] = tag
        self._tagged[key] = (priority, tag, group)
        self._sets[priority].add(key, tag)

    def remove(self, key: TaskKey) -> None:
        """Take a task off (a group whose last tag it held forgets it)."""
        tagged = self._tagged.pop(key, None)
        if tagged is not None:
            priority, tag, group = tagged
            self._sets[priority].remove(key)
            if self._last.get(group) == tag:
                del self._last[group]
        elif self._waiting.pop(key, None) is not None:
            self.waiting.remove(key)
        elif key in self._held_in:
            aside = self._held_in.pop(key)
            held = self._held[aside]
            del held[key]
            if not held:
                del self._held[aside]
                self.wake.pop(aside, None)

    def take(self, key: TaskKey) -> None:
        """Take a task off for a claim: the last claimed tag moves on to its tag."""
        tagged = self._tagged.get(key)
        if tagged is not None:
            self._claimed = max(self._claimed, tagged[1])
        self.remove(key)

    def due(self, now: float, limit: int) -> list[TaskKey]:
        """Up to ``limit`` tasks claimable at ``now``, in claim order (waiting ones due move)."""
        for key in self.waiting.due(now, limit):
            priority, group = self._waiting[key]
            self.add(key, now, priority, group, now)
        found: list[TaskKey] = []
        for ready in reversed(self._sets):
            if len(found) >= limit:
                break
            if ready:
                found += ready.due(float("inf"), limit - len(found))
        return found

    def first_due(self, now: float) -> float | None:
        """When the first waiting task due at ``now`` became so, or None."""
        at = self.waiting.first()
        return at if at is not None and at <= now else None

    def head(self) -> TaskKey | None:
        """The next task a claim takes of those tagged (without moving due waiting ones)."""
        for ready in reversed(self._sets):
            if ready:
                return ready.due(float("inf"), 1)[0]
        return None

    def next_at(self, blocked: bool = False) -> float | None:
        """When the next claim is due.

        0 while any is claimable now (unless ``blocked``), else the first ready time or
        held group's wake.
        """
        if self._tagged and not blocked:
            return 0.0
        times = [at for at in self.wake.values() if at != float("inf")]
        if not blocked and (first := self.waiting.first()) is not None:
            times.append(first)
        return min(times, default=None)

    def count_until(self, now: float) -> int:
        return len(self._tagged) + len(self._held_in) + self.waiting.count_until(now)

    def __iter__(self) -> Iterator[TaskKey]:
        return iter([*self._tagged, *self._waiting, *self._held_in])


class _Queue:
    def __init__(self) -> None:
        self.ready = _Ready()
        self.leased = _ZSet()
        self.counters: Counter[str] = Counter()
        self.paused = False
        self.limits: dict[str, float] = {}
        """As the Redis scripts keep them: 'c', 'r', 'b' the queue's, 'c:<group>'... a group's."""
        self.buckets: dict[str, tuple[float, float]] = {}
        """A token bucket's tokens and when ('' the queue's, 'g<group>' a group's)."""


def _ignore(queue: str) -> None:
    """The default ``on_queue``: nobody listens."""


class MemoryQueueStorage(MemoryStorage):
    """The in-memory engine with work queues (see the module doc)."""

    def __init__(self) -> None:
        """Start empty."""
        super().__init__()
        self._queues: dict[str, _Queue] = {}
        self._dedup: dict[tuple[str, str, str], TaskKey] = {}
        """(owner, queue, dedup key) -> the last task submitted with it."""
        self._waiting: dict[TaskKey, _Waiting] = {}
        """The tasks waiting for parents (state ``b``)."""
        self._children: dict[TaskKey, list[TaskKey]] = {}
        """A parent -> the tasks that waited for it when they were submitted."""
        self.on_queue: Callable[[str], None] = _ignore
        """Called, under the lock, with the name of a queue that may have work to claim."""

    # --- the task writes, extended --------------------------------------------------------

    def create(self, task: NewTask) -> Created:
        """Create the task and, for ``submit``, enqueue it in the same step.

        A dedup key held by a live task creates nothing (debouncing it when asked). A
        task submitted after parents waits off its queue until they have completed.
        """
        with self._lock:
            job = task.job
            pending: list[TaskKey] = []
            ended: str | None = None
            if job is not None and job.after:
                found = self._parents(task.key.owner_id, job, task.now_ms)
                if isinstance(found, MissingParent):
                    return found
                pending, ended = found
            dedup = None
            if job is not None and job.dedup_key is not None:
                dedup = (task.key.owner_id, job.queue, job.dedup_key)
                duplicate = self._duplicate(self._dedup.get(dedup), job, task.now_ms)
                if duplicate is not None:
                    return duplicate
            outcome = super().create(task)
            if outcome is CreateOutcome.CREATED and dedup is not None:
                self._dedup[dedup] = task.key
            if outcome is CreateOutcome.CREATED and job is not None:
                now = now_ms()
                entry = self._entries[task.key]
                ready_at = float(now + job.delay_ms)
                entry.params = bytes(job.params)
                entry.job = StoredJob(
                    queue=job.queue,
                    state="b" if pending or ended is not None else "r",
                    attempt=0,
                    max_attempts=job.max_attempts,
                    token=0,
                    ready_at_ms=ready_at,
                    priority=job.priority,
                    resubmitted_from=job.resubmitted_from,
                    group=job.group,
                    parents=job.after,
                    scheduled_for_ms=job.scheduled_for_ms,
                )
                entry.snapshot = None
                queue = self._queue(job.queue)
                queue.counters["submitted"] += 1
                if entry.job.state == "b":
                    self._waiting[task.key] = _Waiting(len(pending), job)
                    for parent in pending:
                        self._children.setdefault(parent, []).append(task.key)
                    if ended is not None:
                        self._cancel_child(task.key, ended, task.now_ms)
                        return CreateOutcome.CANCELLED
                    return outcome
                queue.ready.add(task.key, ready_at, job.priority, _group(task.key, entry.job), now)
                self.on_queue(job.queue)
            return outcome

    def _parents(
        self, owner: str, job: NewJob, now: int
    ) -> tuple[list[TaskKey], str | None] | MissingParent:
        """The parents still running, and one that ended without completing (for cancelling)."""
        pending: list[TaskKey] = []
        ended = None
        for parent_id in job.after:
            key = TaskKey(owner, parent_id)
            entry = self._live_entry(key, now)
            parent = None if entry is None else entry.job
            if (
                entry is None
                or parent is None
                or (entry.expires_at_ms is not None and entry.expires_at_ms <= now)
            ):
                return MissingParent(parent_id)
            if parent.state != "d":
                pending.append(key)
            elif parent.ended != "completed" and not job.run_anyway and ended is None:
                ended = parent_id
        return pending, ended

    def _parent_ended(self, key: TaskKey, status: str, now: int) -> None:
        """Release or cancel what waits for ``key``, which ended with ``status``; and on."""
        work = [(key, status)]
        while work:
            parent, ended = work.pop()
            for child in self._children.pop(parent, []):
                waiting = self._waiting.get(child)
                if waiting is None:
                    continue
                if ended == "completed" or waiting.job.run_anyway:
                    waiting.left -= 1
                    if waiting.left <= 0:
                        self._release_child(child)
                else:
                    self._cancel_child(child, parent.task_id, now)
                    work.append((child, "cancelled"))

    def _release_child(self, key: TaskKey) -> None:
        """Every parent of ``key`` is done: it joins its queue, ready now."""
        del self._waiting[key]
        entry = self._entries[key]
        job = entry.job
        assert job is not None
        at = float(now_ms())
        self._set_job(key, entry, msgspec.structs.replace(job, state="r", ready_at_ms=at))
        self._queue(job.queue).ready.add(key, at, job.priority, _group(key, job), at)
        self.on_queue(job.queue)

    def _cancel_child(self, key: TaskKey, parent_id: str, now: int) -> None:
        """``key``'s parent ``parent_id`` ended without completing: cancel ``key``."""
        waiting = self._waiting.pop(key)
        entry = self._entries[key]
        job = entry.job
        assert job is not None
        text = waiting.job.after_texts[waiting.job.after.index(parent_id)]
        entry.data = waiting.job.cancelled.replace(b"\n", text.encode(), 1)
        entry.core_version += 1
        entry.updated_at_ms = now
        entry.terminal = True
        entry.job = msgspec.structs.replace(job, state="d", ended="cancelled")
        entry.version += 1
        entry.snapshot = None
        self._queue(job.queue).counters["cancelled"] += 1
        self.on_change(key)

    def _duplicate(self, holder: TaskKey | None, job: NewJob, now: int) -> Duplicate | None:
        """What a submit with a dedup key held by ``holder`` does instead (None: create)."""
        entry = None if holder is None else self._live_entry(holder, now)
        held = None if entry is None else entry.job
        if holder is None or entry is None or held is None:
            return None
        expired = entry.expires_at_ms is not None and entry.expires_at_ms <= now
        if held.state == "d" or held.ended or expired or held.queue != job.queue:
            return None
        if job.debounce_ms is None:
            return Duplicate(task_id=holder.task_id, debounced=False)
        if held.state != "r":
            return None
        at = float(now_ms())
        ready_at = at + job.debounce_ms
        entry.params = bytes(job.params)
        self._set_job(holder, entry, msgspec.structs.replace(held, ready_at_ms=ready_at))
        queue = self._queue(job.queue)
        queue.ready.add(holder, ready_at, held.priority, _group(holder, held), at)
        queue.counters["debounced"] += 1
        return Duplicate(task_id=holder.task_id, debounced=True)

    def compare_and_set(self, write: CoreWrite) -> CasResult:
        """The core compare-and-set, fenced when asked; a terminal write ends the job."""
        with self._lock:
            now = now_ms()
            entry = self._live_entry(write.key, now)
            fence = write.fence
            if entry is not None and fence is not None:
                refused = _refusal(entry.job, fence, now)
                if refused:
                    return CasResult(applied=False, current=entry.stored(), lease_lost=refused)
            result = super().compare_and_set(write)
            job = None if entry is None else entry.job
            if (
                result.applied
                and write.terminal
                and entry is not None
                and job is not None
                and job.state != "d"
            ):
                self._finish(write.key, entry, job, write.status, fence)
                result = CasResult(applied=True, current=entry.stored())
            return result

    def merge_variables(self, merge: VariableMerge) -> MergeResult:
        """The variable merge, fenced when asked."""
        with self._lock:
            now = now_ms()
            entry = self._live_entry(merge.key, now)
            if entry is not None and merge.fence is not None:
                refused = _refusal(entry.job, merge.fence, now)
                if refused:
                    return MergeResult(outcome=MergeOutcome.LEASE_LOST, lease_lost=refused)
            return super().merge_variables(merge)

    def _remove(self, key: TaskKey) -> None:
        job = self._entries[key].job
        self._waiting.pop(key, None)
        if key in self._children:  # deleted before it ended: as if it had failed
            self._parent_ended(key, "gone", now_ms())
        super()._remove(key)
        if job is not None:
            queue = self._queue(job.queue)
            queue.ready.remove(key)
            queue.leased.remove(key)

    # --- queue steps ----------------------------------------------------------------------

    def claim(
        self, queue_name: str, count: int, lease_ms: int, worker_id: str, batch: int
    ) -> ClaimReply:
        """Recover expired leases (bounded), then lease up to ``count`` ready tasks."""
        with self._lock:
            now = float(now_ms())
            queue = self._queue(queue_name)
            lost, recovered = self._recover(queue_name, queue, now, batch)
            claimed: list[ClaimedJob] = []
            queue.ready.unhold(now)
            limits = queue.limits
            tokens: dict[str, float] = {}
            if limits and "c" in limits:
                count = min(count, int(limits["c"]) - self._leases(queue))
            if limits and "r" in limits:
                tokens[""] = _tokens(queue, "", limits["r"], limits.get("b", 1), now)
                count = min(count, int(tokens[""]))
            for key in queue.ready.due(now, 0 if queue.paused or count <= 0 else count + batch):
                if len(claimed) >= count:
                    break
                group = queue.ready.group_of(key)
                entry = self._live_entry(key, int(now))
                job = None if entry is None else entry.job
                if limits and group is not None and job is not None and job.state == "r":
                    wait = self._wait(queue, group, tokens, now)
                    if wait is not None:
                        queue.ready.hold(key, wait)
                        continue
                queue.ready.take(key)
                if entry is None or job is None or job.state != "r" or job.ended:
                    continue
                if entry.expires_at_ms is not None and entry.expires_at_ms <= now:
                    continue
                if job.attempt >= job.max_attempts:  # released after its last attempt
                    self._set_job(key, entry, msgspec.structs.replace(job, state="y"))
                    queue.leased.add(key, now + LOST_RETRY_MS)
                    lost.append(_lost(key, job, expired=False))
                    continue
                deadline = now + lease_ms
                leased = msgspec.structs.replace(
                    job,
                    state="l",
                    attempt=job.attempt + 1,
                    token=job.token + 1,
                    worker_id=worker_id,
                    lease_deadline_ms=deadline,
                )
                self._set_job(key, entry, leased)
                queue.leased.add(key, deadline)
                for field in ("", "g" + _group(key, job)):
                    if field in tokens:
                        tokens[field] -= 1
                claimed.append(
                    ClaimedJob(
                        key=key,
                        record=entry.stored(),
                        token=leased.token,
                        attempt=leased.attempt,
                        deadline_ms=deadline,
                    )
                )
            for field, left in tokens.items():
                queue.buckets[field] = (left, now)
            queue.counters["claimed"] += len(claimed)
            return ClaimReply(
                claimed=claimed,
                lost=lost,
                next_due_in_ms=self._next_due(queue, now),
                recovered=recovered,
            )

    def complete_and_claim(
        self,
        queue_name: str,
        writes: list[CoreWrite],
        count: int,
        lease_ms: int,
        worker_id: str,
        batch: int,
    ) -> tuple[list[CasResult], ClaimReply]:
        """Apply lease holders' terminal writes, then claim up to ``count`` (0: none)."""
        with self._lock:
            outcomes = [self.compare_and_set(write) for write in writes]
            if count > 0:
                return outcomes, self.claim(queue_name, count, lease_ms, worker_id, batch)
            queue = self._queue(queue_name)
            due = self._next_due(queue, float(now_ms()))
            return outcomes, ClaimReply(claimed=[], lost=[], next_due_in_ms=due, recovered=0)

    def recover(self, queue_name: str, batch: int) -> ClaimReply:
        """One bounded recovery step of ``queue_name`` without claiming anything."""
        with self._lock:
            now = float(now_ms())
            queue = self._queue(queue_name)
            lost, recovered = self._recover(queue_name, queue, now, batch)
            return ClaimReply(
                claimed=[],
                lost=lost,
                next_due_in_ms=self._next_due(queue, now),
                recovered=recovered,
            )

    def renew(self, leases: list[LeaseRef], lease_ms: int) -> list[RenewOutcome]:
        """Extend each lease still held to ``lease_ms`` from now; say why for the others."""
        with self._lock:
            now = float(now_ms())
            outcomes: list[RenewOutcome] = []
            for ref in leases:
                entry = self._live_entry(ref.key, int(now))
                if entry is None:
                    outcomes.append(RenewOutcome(None, "missing"))
                    continue
                refused = _refusal(entry.job, Fence(queue=ref.queue, token=ref.token), now)
                if refused or entry.job is None:
                    outcomes.append(RenewOutcome(None, refused or "missing"))
                    continue
                deadline = now + lease_ms
                self._set_job(
                    ref.key, entry, msgspec.structs.replace(entry.job, lease_deadline_ms=deadline)
                )
                self._queue(ref.queue).leased.add(ref.key, deadline)
                outcomes.append(RenewOutcome(deadline))
            return outcomes

    def release(
        self, ref: LeaseRef, delay_ms: int, *, count_attempt: bool = True
    ) -> tuple[str, VersionedRecord | None]:
        """Hand a held lease back: the task is claimable again after ``delay_ms``.

        ``count_attempt`` False hands the attempt back too (never below 0), as release.lua.

        Returns ("", the task as it is now) or (why it was refused, None).
        """
        with self._lock:
            now = float(now_ms())
            entry = self._live_entry(ref.key, int(now))
            if entry is None:
                return "missing", None
            job = entry.job
            refused = _refusal(job, Fence(queue=ref.queue, token=ref.token), now)
            if refused or job is None:
                return refused or "missing", None
            ready_at = now + delay_ms
            self._set_job(
                ref.key,
                entry,
                msgspec.structs.replace(
                    job,
                    state="r",
                    lease_deadline_ms=None,
                    ready_at_ms=ready_at,
                    attempt=job.attempt if count_attempt else max(job.attempt - 1, 0),
                ),
            )
            queue = self._queue(ref.queue)
            queue.leased.remove(ref.key)
            queue.ready.add(ref.key, ready_at, job.priority, _group(ref.key, job), now)
            self._lease_ended(ref.queue, queue, ref.key, job)
            queue.counters["released"] += 1
            self.on_queue(ref.queue)
            return "", entry.stored()

    def queue_due(self, queue_name: str) -> float | None:
        """Ms until the queue needs a claim (0: now; None: it holds nothing)."""
        with self._lock:
            queue = self._queues.get(queue_name)
            return None if queue is None else self._next_due(queue, float(now_ms()))

    def queue_counts(self, queue_name: str) -> QueueCounts:
        """The queue's numbers now."""
        with self._lock:
            now = float(now_ms())
            queue = self._queues.get(queue_name)
            if queue is None:
                return QueueCounts()
            ready = queue.ready.count_until(now)
            first = queue.ready.first_due(now)
            head = queue.ready.head()
            entry = None if head is None else self._entries.get(head)
            if entry is not None and entry.job is not None and entry.job.ready_at_ms is not None:
                first = min(first or entry.job.ready_at_ms, entry.job.ready_at_ms)
            counters = dict(queue.counters)
            if queue.paused:
                counters["paused"] = 1
            return QueueCounts(
                ready=ready,
                delayed=len(queue.ready) - ready,
                leased=len(queue.leased),
                oldest_ready_age_ms=None if first is None else now - first,
                counters=counters,
                waiting=sum(1 for held in self._waiting.values() if held.job.queue == queue_name),
            )

    def queue_leases(self, queue_name: str, limit: int) -> list[LeasedJob]:
        """Up to ``limit`` of the queue's leases, soonest deadline first."""
        with self._lock:
            queue = self._queues.get(queue_name)
            leases: list[LeasedJob] = []
            for key in queue.leased.due(float("inf"), limit) if queue is not None else ():
                entry = self._entries.get(key)
                job = entry.job if entry is not None else None
                if job is None or job.lease_deadline_ms is None:
                    continue
                leases.append(
                    LeasedJob(
                        key=key,
                        worker_id=job.worker_id or "",
                        attempt=job.attempt,
                        deadline_ms=job.lease_deadline_ms,
                        lost=job.state in ("x", "y"),
                    )
                )
            return leases

    def queue_names(self) -> list[str]:
        """Every queue a task was ever submitted to (or that was paused)."""
        with self._lock:
            return sorted(self._queues)

    def set_paused(self, queue_name: str, paused: bool) -> None:
        """Pause the queue (it leases nothing) or resume it, telling its watchers."""
        with self._lock:
            queue = self._queue(queue_name)
            if queue.paused and not paused:
                self.on_queue(queue_name)
            queue.paused = paused

    # --- helpers (under the lock) ---------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _leases(self, queue: _Queue, group: str | None = None) -> int:
        """The leases held on ``queue`` (of ``group``): claimed, not yet ended; lost ones too."""
        held = 0
        for key in queue.leased:
            entry = self._entries.get(key)
            job = None if entry is None else entry.job
            if job is not None and job.state in ("l", "x"):
                held += group is None or _group(key, job) == group
        return held

    def _wait(
        self, queue: _Queue, group: str, tokens: dict[str, float], now: float
    ) -> float | None:
        """When a group at its limit is looked at again (inf: a lease end), or None: it is not."""
        limits = queue.limits
        most, rate = limits.get("c:" + group), limits.get("r:" + group)
        if most is not None and self._leases(queue, group) >= most:
            return float("inf")
        if rate is not None:
            field = "g" + group
            if field not in tokens:
                tokens[field] = _tokens(queue, field, rate, limits.get("b:" + group, 1), now)
            if tokens[field] < 1:
                return _token_due(tokens[field], rate, now)
        return None

    def _next_due(self, queue: _Queue, now: float) -> float | None:
        """Ms until the queue needs a visit (None: never), as the Redis scripts' next_due."""
        ready = None
        if not queue.paused:
            limits = queue.limits
            blocked = False
            if "c" in limits and self._leases(queue) >= limits["c"]:
                blocked = True  # a lease's end tells the workers
            elif "r" in limits:
                tokens = _tokens(queue, "", limits["r"], limits.get("b", 1), now)
                if tokens < 1:
                    blocked = True
                    ready = _token_due(tokens, limits["r"], now)
            at = queue.ready.next_at(blocked)
            if at is not None and (ready is None or at < ready):
                ready = at
        due = [score for score in (ready, queue.leased.first()) if score is not None]
        return None if not due else max(0.0, min(due) - now)

    def _lease_ended(self, name: str, queue: _Queue, key: TaskKey, job: StoredJob) -> None:
        """A lease ended: with limits, its group held until then is due, and workers hear."""
        if queue.limits:
            queue.ready.lease_ended(_group(key, job))
            self.on_queue(name)

    def set_limits(self, queue_name: str, group: str | None, limits: dict[str, float]) -> None:
        """Set (or, for a name not given, remove) the limits of the queue or of ``group``."""
        with self._lock:
            queue = self._queue(queue_name)
            suffix = "" if group is None else ":" + group
            for name in ("c", "r", "b"):
                queue.limits.pop(name + suffix, None)
                if name in limits:
                    queue.limits[name + suffix] = limits[name]
            if not queue.limits:
                queue.buckets.clear()
            queue.ready.look_again()
            self.on_queue(queue_name)

    def queue_limits(self, queue_name: str) -> dict[str, float]:
        """The queue's limits, as ``set_limits`` keeps them."""
        with self._lock:
            queue = self._queues.get(queue_name)
            return {} if queue is None else dict(queue.limits)

    def _set_job(self, key: TaskKey, entry: _Entry, job: StoredJob) -> None:
        """Change a task's queue state: a write of the task (its version goes up)."""
        entry.job = job
        entry.version += 1
        entry.snapshot = None
        self.on_change(key)

    def _recover(
        self, name: str, queue: _Queue, now: float, batch: int
    ) -> tuple[list[LostJob], int]:
        lost: list[LostJob] = []
        recovered = 0
        for key in queue.leased.due(now, batch):
            entry = self._live_entry(key, int(now))
            job = None if entry is None else entry.job
            if entry is None or job is None or job.ended or job.state in ("d", "r"):
                queue.leased.remove(key)
            elif job.state == "l" and job.attempt < job.max_attempts:
                self._set_job(
                    key,
                    entry,
                    msgspec.structs.replace(
                        job, state="r", lease_deadline_ms=None, ready_at_ms=now
                    ),
                )
                queue.leased.remove(key)
                queue.ready.add(key, now, job.priority, _group(key, job), now)
                self._lease_ended(name, queue, key, job)
                recovered += 1
            else:  # its last attempt was lost (or released): hand it out to be failed
                if job.state == "l":
                    self._set_job(key, entry, msgspec.structs.replace(job, state="x"))
                queue.leased.add(key, now + LOST_RETRY_MS)
                lost.append(_lost(key, job, expired=job.state != "y"))
        if recovered:
            queue.counters["recovered"] += recovered
            self.on_queue(name)
        return lost, recovered

    def _finish(
        self, key: TaskKey, entry: _Entry, job: StoredJob, status: str, fence: Fence | None
    ) -> None:
        """A terminal write landed: the job is done and leaves its queue."""
        entry.job = msgspec.structs.replace(job, state="d", ended=status, lease_deadline_ms=None)
        entry.snapshot = None
        self._waiting.pop(key, None)
        self._parent_ended(key, status, now_ms())
        queue = self._queue(job.queue)
        queue.ready.remove(key)
        queue.leased.remove(key)
        if job.state in ("l", "x"):
            self._lease_ended(job.queue, queue, key, job)
        queue.counters[status] += 1
        if fence is not None and fence.finalize:
            queue.counters["given_up"] += 1


class _Waiting:
    """A task waiting for parents: how many have not completed yet, and its submit."""

    __slots__ = ("job", "left")

    def __init__(self, left: int, job: NewJob) -> None:
        self.left = left
        self.job = job


def _group(key: TaskKey, job: StoredJob | None) -> str:
    """A queued task's flow-control group: the one its submit named, else its owner id."""
    if job is not None and job.group is not None:
        return job.group
    return key.owner_id


def _lost(key: TaskKey, job: StoredJob, *, expired: bool) -> LostJob:
    return LostJob(
        key=key,
        token=job.token,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        expired=expired,
    )


def _tokens(queue: _Queue, field: str, rate: float, burst: float, now: float) -> float:
    """A token bucket's tokens at ``now`` (full when never used)."""
    tokens, at = queue.buckets.get(field, (burst, now))
    return min(burst, tokens + max(0.0, now - at) * rate / 1000)


def _token_due(tokens: float, rate: float, now: float) -> float:
    return now + max(0.0, 1 - tokens) * 1000 / rate


def _refusal(job: StoredJob | None, fence: Fence, now: float) -> str:
    """Why the lease ``fence`` names does not hold, or "" when it does (or may finalize)."""
    if job is None or job.queue != fence.queue:
        return "missing"
    if fence.finalize:
        return "" if job.state in ("x", "y") and job.token == fence.token else "finalized"
    if fence.token > job.token:
        return "forged"
    if job.ended:
        return job.ended
    if fence.token < job.token:
        return "reclaimed"
    if job.state != "l" or job.lease_deadline_ms is None or job.lease_deadline_ms <= now:
        return "expired"
    return ""
