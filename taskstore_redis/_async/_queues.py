"""Work queues: submitting, claiming, renewing and releasing leases, sweeping lost ones.

``QueueOperations`` is the part of the store (``GenericTaskStore``) that works on
queues; ``QueueHints`` is what a store knows of the shards of the queues it claims from.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Sequence
from time import monotonic

from .._core.backend_types import (
    ClaimedJob,
    ClaimReply,
    CoreWrite,
    Created,
    CreateOutcome,
    Fence,
    LeaseRef,
    LostJob,
    NewJob,
    NewTask,
    TaskKey,
)
from .._core.clock import now_ms
from .._core.config import SecurityConfig, StoreConfig
from .._core.errors import (
    InvalidArgument,
    InvalidLeaseToken,
    LeaseLost,
    PartialSubmit,
    ResourceExhausted,
    StorageCorrupted,
    StoreUnavailable,
    TaskStoreError,
    VariableSizeExceeded,
)
from .._core.model import (
    JSONValue,
    LeaseInfo,
    Limits,
    QueueLimits,
    QueueStats,
    TaskRecord,
    datetime_from_ms,
    encode_json,
    json_contents,
)
from .._core.rules import change_status
from .._core.status import TaskStatus
from .._core.validation import (
    check_count,
    check_delay,
    check_id,
    check_owner,
    check_priority,
    check_queue,
    check_timeout,
    check_token,
    check_worker_id,
    clean_json_value,
    resolve_lease_ms,
    resolve_max_attempts,
    resolve_ttl,
)
from .._runtime.fanout import Pokeable
from .._runtime.wake import async_waker
from ._engine import (
    READ_PAUSE_FIRST,
    READ_PAUSE_MAX,
    Change,
    TaskEngine,
    core_write,
    lost_lease,
    submitted,
)
from ._lease import Lease
from ._protocols import QueueBackend, QueueWatch, StorageBackend

_UNSUBSCRIBED_PAUSE = 0.05
SUBMIT_CHUNK = 500
"""The tasks ``submit_many`` sends in one pipeline."""
MAX_SUBMIT_MANY = 100_000
"""The most tasks one ``submit_many`` takes."""
_COUNTERS = (
    "submitted",
    "claimed",
    "completed",
    "failed",
    "cancelled",
    "released",
    "recovered",
    "given_up",
)


class QueueOperations(TaskEngine):
    """The store's work-queue operations (see ``GenericTaskStore``)."""

    def __init__(
        self,
        backend: StorageBackend,
        config: StoreConfig | None = None,
        security: SecurityConfig | None = None,
    ) -> None:
        """Wrap ``backend`` with the given limits (defaults when None)."""
        super().__init__(backend, config, security)
        self._hints: dict[str, QueueHints] = {}
        self._queued = backend if isinstance(backend, QueueBackend) else None

    async def _close_queue_watches(self) -> None:
        hints, self._hints = list(self._hints.values()), {}
        for hint in hints:
            watch, hint.watch = hint.watch, None
            if watch is not None and hint.opened:
                await watch.__aexit__(None, None, None)

    async def submit(
        self,
        request_method: str,
        params: JSONValue = None,
        *,
        owner_id: str,
        queue: str = "default",
        ttl_ms: int | None = None,
        delay_ms: int = 0,
        max_attempts: int | None = None,
        priority: int = 0,
        group: str | None = None,
        dedup_key: str | None = None,
        debounce_ms: int | None = None,
        after: Sequence[str] | None = None,
        on_parent_failure: str = "cancel",
    ) -> TaskRecord:
        """Create a task (status ``working``) and enqueue it, in one atomic step.

        ``params`` is the job's input (plain JSON, up to ``max_params_bytes``),
        handed to the worker that claims it. The task is claimable ``delay_ms``
        after submission, by up to ``max_attempts`` claims
        (``config.default_max_attempts`` when None). Claims take the highest
        ``priority`` (0 to 9) first; within a priority they share fairly among
        flow-control groups (``group``, the owner id by default): a group with many
        tasks queued cannot starve one with few that come after them, and each
        group's tasks keep their order. A delayed task joins when it becomes due.
        The owner's quota counts it like any created task.

        With ``dedup_key``, while a task of this owner on this queue that was
        submitted with the same key is live (not ended, not expired), nothing is
        created and that task's record is returned (same ``task_id``), in the same
        atomic step, so concurrent submits make one task. With ``debounce_ms`` too,
        the task is first ready ``debounce_ms`` from now (or after ``delay_ms`` if
        later), and each later submit with the key, while the task is not yet
        leased, gives it the new params and pushes its ready time to
        ``debounce_ms`` from then: one run after a burst. Once it is leased, the
        next submit creates a new task.

        With ``after`` (ids of tasks this owner submitted to any queue, up to 10,000),
        the task waits (``job.state`` ``"waiting"``) until every one of
        them has completed, then joins its queue, ready at once: the write that
        completes the last parent releases it, in the same atomic step. When a parent
        fails or is cancelled the task is cancelled, with a status message naming that
        parent, and so are the tasks waiting for it in turn; with
        ``on_parent_failure="run"`` it runs however its parents end. A parent that has
        already ended counts as it ended. Its worker reads the parents' results with
        ``Lease.parent_results``. The parents must exist when the task is submitted, so
        no cycle can form.

        Raises:
            InvalidArgument: a bad queue name, delay, attempt count, priority, group, dedup key,
                debounce (or one without a dedup key), TTL or id, or params that are not
                plain JSON (``VariableSizeExceeded`` when too large); a parent that is no
                live task of this owner submitted to a queue, too many parents, a delay with
                parents, or an ``on_parent_failure`` other than ``"cancel"`` or ``"run"``.
            AnonymousAccessDenied: an anonymous owner while anonymous access is off.
            ResourceExhausted: the owner already has ``max_tasks_per_owner`` tasks in progress.

        """
        owner, method, ttl, name, delay, attempts, rank, flow = self._submission(
            request_method, owner_id, ttl_ms, queue, delay_ms, max_attempts, priority, group
        )
        encoded = self._params(params, "params")
        dedup = None if dedup_key is None else check_id(dedup_key, "dedup_key")
        if dedup == "":
            raise InvalidArgument("dedup_key must not be empty")
        debounce = None
        if debounce_ms is not None:
            if dedup is None:
                raise InvalidArgument("debounce_ms needs a dedup_key")
            debounce = check_delay(debounce_ms, self._config, "debounce_ms")
            delay = max(delay, debounce)
        parents = _parents(after, on_parent_failure, delay)
        self._queue_backend()
        job = NewJob(
            queue=name,
            params=encoded,
            max_attempts=attempts,
            delay_ms=delay,
            priority=rank,
            group=flow,
            dedup_key=dedup,
            debounce_ms=debounce,
            after=parents,
            after_texts=tuple(map(json_contents, parents)),
            run_anyway=on_parent_failure == "run",
        )
        return await self._create(owner, method, ttl, job)

    async def submit_many(
        self,
        request_method: str,
        params_list: Sequence[JSONValue],
        *,
        owner_id: str,
        queue: str = "default",
        ttl_ms: int | None = None,
        delay_ms: int = 0,
        max_attempts: int | None = None,
        priority: int = 0,
        group: str | None = None,
    ) -> builtins.list[TaskRecord]:
        """Submit one task per item of ``params_list``, as ``submit`` would; their records.

        Every item is checked before anything is written: one bad item raises
        ``InvalidArgument`` naming it (``params[i]``) and nothing is submitted. Then
        the tasks go in chunks of ``SUBMIT_CHUNK``, each chunk one pipeline of
        atomic creates (one round trip per node), each task checked against the
        owner's quota on its own. When some tasks are not submitted (the quota
        ran out, the store did not answer), ``PartialSubmit`` is raised with an
        outcome per item, the records of those that were submitted included; a
        chunk is never half-written per task, and no chunk is sent after one the
        store did not answer.

        Raises:
            InvalidArgument: a bad argument or item (``VariableSizeExceeded`` when one is
                too large), or more than ``MAX_SUBMIT_MANY`` items; nothing is written.
            AnonymousAccessDenied: an anonymous owner while anonymous access is off.
            PartialSubmit: some tasks were not submitted (see above).

        """
        owner, method, ttl, name, delay, attempts, rank, flow = self._submission(
            request_method, owner_id, ttl_ms, queue, delay_ms, max_attempts, priority, group
        )
        if isinstance(params_list, (str, bytes)) or not isinstance(params_list, Sequence):
            raise InvalidArgument(f"params_list must be a list, got {type(params_list).__name__}")
        if len(params_list) > MAX_SUBMIT_MANY:
            raise InvalidArgument(
                f"params_list holds {len(params_list)} items, above {MAX_SUBMIT_MANY}"
            )
        jobs = [
            NewJob(
                queue=name,
                params=self._params(params, f"params[{at}]"),
                max_attempts=attempts,
                delay_ms=delay,
                priority=rank,
                group=flow,
            )
            for at, params in enumerate(params_list)
        ]
        backend = self._queue_backend()
        results: builtins.list[TaskRecord | TaskStoreError] = []
        failed: StoreUnavailable | None = None
        for start in range(0, len(jobs), SUBMIT_CHUNK):
            chunk = jobs[start : start + SUBMIT_CHUNK]
            if failed is not None:
                results += [StoreUnavailable(f"submit_many: not sent: {failed}")] * len(chunk)
                continue
            now = now_ms()
            built = [self._new_task(owner, method, ttl, job, now) for job in chunk]
            try:
                outcomes = await backend.create_many([task for _, task in built])
            except StoreUnavailable as exc:
                failed = exc
                results += [exc] * len(chunk)
                continue
            for (record, task), outcome in zip(built, outcomes, strict=True):
                results.append(self._submit_result(record, task, outcome, now))
        if any(isinstance(result, TaskStoreError) for result in results):
            raise PartialSubmit(results)
        return [result for result in results if isinstance(result, TaskRecord)]

    def _submission(
        self,
        request_method: str,
        owner_id: str,
        ttl_ms: int | None,
        queue: str,
        delay_ms: int,
        max_attempts: int | None,
        priority: int,
        group: str | None,
    ) -> tuple[str, str, int | None, str, int, int, int, str | None]:
        """A submit's arguments, checked: the owner first, the flow-control group last.

        In order: owner, method, TTL, queue, delay, attempts, priority and group (None:
        the owner's own).
        """
        owner = check_owner(owner_id, self._security)
        return (
            owner,
            check_id(request_method, "request_method"),
            resolve_ttl(ttl_ms, self._config),
            check_queue(queue),
            check_delay(delay_ms, self._config),
            resolve_max_attempts(max_attempts, self._config),
            check_priority(priority),
            _flow_group(group, owner),
        )

    def _params(self, params: JSONValue, what: str) -> bytes:
        """Checked params as stored (``what`` names them in an error)."""
        encoded = encode_json(clean_json_value(params, self._config, what))
        if len(encoded) > self._config.max_params_bytes:
            raise VariableSizeExceeded(self._config.max_params_bytes, len(encoded), what)
        return encoded

    def _submit_result(
        self,
        record: TaskRecord,
        task: NewTask,
        outcome: Created,
        now: int,
    ) -> TaskRecord | TaskStoreError:
        """One item of ``submit_many``: its record, or why it was not submitted."""
        if outcome is CreateOutcome.CREATED and task.job is not None:
            return submitted(record, task.job, now)
        if outcome is CreateOutcome.QUOTA_EXCEEDED:
            return ResourceExhausted(self._security.max_tasks_per_owner or 0)
        return StorageCorrupted(f"task id {record.task.task_id!r} was taken; nothing written")

    async def resubmit(self, task_id: str, *, owner_id: str, delay_ms: int = 0) -> TaskRecord:
        """Submit a ``failed`` or ``cancelled`` task again, as a new task; return the new one.

        A terminal status stays final, so the task itself is left as it is: the new
        task has a new id and the same request method, params, queue, priority, group,
        attempt count and TTL, and is claimable ``delay_ms`` from now. Its
        ``job.resubmitted_from`` names the task it came from. The owner's quota
        counts it like any submitted task.

        Raises:
            TaskNotFound: no such task for this owner.
            InvalidArgument: the task was not submitted to a queue, is not ``failed`` or
                ``cancelled``, or a bad delay; nothing is written.
            ResourceExhausted: the owner already has ``max_tasks_per_owner`` tasks in progress.

        """
        key = self._key(task_id, owner_id)
        delay = check_delay(delay_ms, self._config)
        source = self._owned(key, await self._backend.get(key)).record
        job = source.job
        status = source.task.status
        if job is None:
            raise InvalidArgument(f"task {task_id!r} was not submitted to a queue")
        if status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise InvalidArgument(
                f"task {task_id!r} is {status.value!r}: only a failed or cancelled task "
                "can be resubmitted"
            )
        self._queue_backend()
        again = NewJob(
            queue=job.queue,
            params=encode_json(source.params),
            max_attempts=job.max_attempts,
            delay_ms=delay,
            priority=job.priority,
            group=job.group,
            resubmitted_from=source.task.task_id,
        )
        ttl = resolve_ttl(source.task.ttl, self._config)
        return await self._create(key.owner_id, source.request_method, ttl, again)

    async def set_limits(
        self,
        queue: str,
        *,
        group: str | None = None,
        max_concurrency: int | None = None,
        per_second: float | None = None,
        burst: int | None = None,
    ) -> None:
        """Set the limits of ``queue``, or of ``group`` on it; None removes a limit.

        ``max_concurrency`` caps the leases held at once (a lost lease counts until its
        task is failed); ``per_second`` caps claims per second with a token bucket of
        ``burst`` tokens (1 by default) on the server's clock. A claim never goes past
        a limit: it skips a group at its limit and serves the others, and the group
        comes back, in its turn, when one of its leases ends or its bucket has a
        token; a worker sleeps until then, with no polling. The call sets the limits
        of the target whole: a value left None removes that limit.

        Limits are kept per shard of the queue, like its tasks: a group whose tasks
        all belong to one owner (a group is the owner by default) has its limit
        exactly; a group named across owners of several shards, and the queue's own
        limits, hold on each shard, so up to the limit times the shards that hold its
        tasks (a store with ``shards=1`` keeps every limit exact).

        Raises:
            InvalidArgument: a bad queue, group or limit, or a burst without a rate.

        """
        name = check_queue(queue)
        target = None if group is None else check_id(group, "group")
        if target == "":
            raise InvalidArgument("group must not be empty")
        limits: dict[str, float] = {}
        if max_concurrency is not None:
            limits["c"] = _whole_limit(max_concurrency, "max_concurrency")
        if per_second is not None:
            if (
                isinstance(per_second, bool)
                or not isinstance(per_second, (int, float))
                or not 0 < per_second <= 1_000_000
            ):
                raise InvalidArgument(
                    f"per_second must be a number above 0, up to 1000000, got {per_second!r}"
                )
            limits["r"] = float(per_second)
            limits["b"] = 1 if burst is None else _whole_limit(burst, "burst")
        elif burst is not None:
            raise InvalidArgument("burst needs a per_second")
        await self._queue_backend().set_limits(name, target, limits)

    async def limits(self, queue: str) -> QueueLimits:
        """The limits ``set_limits`` gave ``queue`` and its groups.

        Raises:
            InvalidArgument: a bad queue name.

        """
        name = check_queue(queue)
        stored = await self._queue_backend().queue_limits(name)
        by_target: dict[str, dict[str, float]] = {}
        for field, value in stored.items():
            kind, _, group = field.partition(":")
            by_target.setdefault(":" + group if group else "", {})[kind] = value
        made = {target: _limits_of(values) for target, values in by_target.items()}
        return QueueLimits(
            queue=name,
            limits=made.pop("", Limits()),
            groups={target[1:]: limits for target, limits in sorted(made.items())},
        )

    async def pause_queue(self, queue: str) -> None:
        """Pause ``queue``: workers lease none of its tasks until ``resume_queue``.

        Tasks already leased go on, and their completions, renewals and releases
        land as usual; expired leases are still recovered. Submitting still
        works. Pausing a paused queue changes nothing. ``queue_stats`` and
        ``taskstore-redis queues`` show it paused.

        Raises:
            InvalidArgument: a bad queue name.

        """
        await self._queue_backend().set_paused(check_queue(queue), True)

    async def resume_queue(self, queue: str) -> None:
        """Resume a paused ``queue``: its workers are told at once, with no polling.

        Resuming a queue that is not paused changes nothing.

        Raises:
            InvalidArgument: a bad queue name.

        """
        await self._queue_backend().set_paused(check_queue(queue), False)

    async def claim(
        self,
        queue: str = "default",
        *,
        lease_ms: int | None = None,
        timeout: float | None = None,
        worker_id: str | None = None,
    ) -> Lease | None:
        """Lease the oldest claimable task of ``queue``; None if there was none in time.

        ``timeout``: 0 returns at once, None waits until there is work, a number
        waits that many seconds at most. Waiting is on change notices, never by
        polling. While the server cannot be reached (a restart, a failover, or not
        up yet when the claim starts) a waiting claim waits on and tries again; one
        with ``timeout=0``, or whose time is up, raises. Any timeout up to ``inf``
        is taken as "that long at most". The lease lasts ``lease_ms``
        (``config.default_lease_ms``) unless renewed; see :class:`Lease`.

        Raises:
            InvalidArgument: a bad queue name, lease, timeout (negative, NaN) or worker id.
            StoreUnavailable: the backend could not be reached before the timeout ran
                out (at once with ``timeout=0``), or it was closed.

        """
        leases = await self.claim_many(
            queue, 1, lease_ms=lease_ms, timeout=timeout, worker_id=worker_id
        )
        return leases[0] if leases else None

    async def claim_many(
        self,
        queue: str,
        count: int,
        *,
        lease_ms: int | None = None,
        timeout: float | None = None,
        worker_id: str | None = None,
    ) -> builtins.list[Lease]:
        """Lease up to ``count`` claimable tasks of ``queue`` (at least one unless none in time).

        Takes as many as one visit of each shard with work yields, one round trip
        per shard visited; returns as soon as it has any. ``timeout`` as in ``claim``.
        On its way it recovers expired leases and fails tasks whose last attempt
        was lost.

        Raises:
            InvalidArgument: a bad queue, count (1..``max_claim_count``), lease or timeout.
            StoreUnavailable: as for ``claim``.

        """
        name = check_queue(queue)
        wanted = check_count(count, self._config)
        lease = resolve_lease_ms(lease_ms, self._config)
        wait = check_timeout(timeout)
        worker = check_worker_id(worker_id)
        backend = self._queue_backend()
        hints = self._hints.get(name)
        if hints is None:
            hints = self._hints.setdefault(name, QueueHints(backend.queue_shards()))
        deadline = None if wait is None else monotonic() + wait
        waker = async_waker()
        hints.add_waiter(waker)
        failures = 0
        try:
            while True:
                try:
                    if hints.watch is None:
                        await self._queue_hints(backend, name)
                    got = await self._claim_round(backend, hints, name, wanted, lease, worker)
                except StoreUnavailable as exc:
                    # a server restarting or failing over: a waiting claim waits on and
                    # tries again (a claim whose reply was lost leased tasks nobody
                    # holds: their leases run out); a closed backend ends it
                    left = None if deadline is None else deadline - monotonic()
                    if exc.__cause__ is None or (left is not None and left <= 0):
                        raise
                    failures += 1
                    pause = min(READ_PAUSE_MAX, READ_PAUSE_FIRST * 2**failures)
                    await waker.wait(pause if left is None else min(pause, left))
                    continue
                failures = 0
                if got:
                    return got
                left = None if deadline is None else deadline - monotonic()
                if left is not None and left <= 0:
                    return []
                pause = hints.pause()
                if not hints.live():
                    # notices may be missed until the subscription is back: look again soon
                    pause = _UNSUBSCRIBED_PAUSE if pause is None else min(pause, 1.0)
                if left is not None:
                    pause = left if pause is None else min(pause, left)
                await waker.wait(None if pause is None else pause + 0.001)
        finally:
            hints.remove_waiter(waker)

    async def renew_leases(
        self, leases: builtins.list[Lease], lease_ms: int | None = None
    ) -> builtins.list[TaskStoreError | None]:
        """Renew many leases in one round trip per node; one outcome per lease, in order.

        None: renewed (the lease's ``expires_at`` moved on); else the error the
        lease's own ``renew`` would raise (``LeaseLost``, ``InvalidLeaseToken``),
        returned, not raised.

        Raises:
            InvalidArgument: a bad ``lease_ms``.

        """
        duration = resolve_lease_ms(lease_ms, self._config)
        backend = self._queue_backend()
        refs = [
            LeaseRef(
                key=TaskKey(lease.owner_id, lease.task_id),
                queue=lease.queue,
                token=check_token(lease.token, lease.task_id),
            )
            for lease in leases
        ]
        outcomes = await backend.renew(refs, duration) if refs else []
        reported: builtins.list[TaskStoreError | None] = []
        for lease, ref, outcome in zip(leases, refs, outcomes, strict=True):
            if outcome.deadline_ms is not None:
                lease._renewed(outcome.deadline_ms)
                reported.append(None)
            elif outcome.lease_lost == "forged":
                reported.append(InvalidLeaseToken(lease.task_id, ref.token))
            else:
                reported.append(LeaseLost(lease.task_id, outcome.lease_lost or "missing"))
        return reported

    async def queue_stats(self, queue: str = "default") -> QueueStats:
        """The queue's numbers now, summed over its shards (one round trip per shard).

        Raises:
            InvalidArgument: a bad queue name.

        """
        name = check_queue(queue)
        counts = await self._queue_backend().queue_counts(name)
        counters = counts.counters
        return QueueStats(
            queue=name,
            ready=counts.ready,
            delayed=counts.delayed,
            leased=counts.leased,
            oldest_ready_age_ms=counts.oldest_ready_age_ms,
            waiting=counts.waiting,
            paused=counters.get("paused", 0) > 0,
            **{field: counters.get(field, 0) for field in _COUNTERS},
        )

    async def queue_leases(
        self, queue: str = "default", *, limit: int = 100
    ) -> builtins.list[LeaseInfo]:
        """The tasks workers hold on ``queue``, soonest lease deadline first, ``limit`` at most.

        One bounded read per shard (``limit`` leases each; one round trip per node):
        what ``taskstore-redis top`` shows per worker.

        Raises:
            InvalidArgument: a bad queue name, or ``limit`` not in 1..10000.

        """
        name = check_queue(queue)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidArgument(f"limit must be a whole number from 1 to 10000, got {limit!r}")
        leases = await self._queue_backend().queue_leases(name, limit)
        return [
            LeaseInfo(
                task_id=lease.key.task_id,
                owner_id=lease.key.owner_id,
                worker_id=lease.worker_id or None,
                attempt=lease.attempt,
                expires_at=datetime_from_ms(lease.deadline_ms),
                lost=lease.lost,
            )
            for lease in sorted(leases, key=lambda lease: lease.deadline_ms)[:limit]
        ]

    async def queues(self) -> builtins.list[str]:
        """The names of every queue a task was ever submitted to (or paused), sorted."""
        return sorted(await self._queue_backend().queue_names())

    async def recover_leases(self, queue: str | None = None) -> int:
        """Sweep expired leases now; return how many tasks it requeued or failed.

        A task whose lease expired goes back to its queue for another attempt,
        or fails (``worker lost``) when it has none left. ``None`` sweeps every
        queue known. Each step is bounded (``recovery_batch`` leases per shard);
        the sweep repeats steps until no expired lease is left. Claims do the same
        on their way, so recovery never depends on this being called, nor on claims.
        """
        backend = self._queue_backend()
        names = [check_queue(queue)] if queue is not None else await backend.queue_names()
        batch = self._config.recovery_batch
        done = 0
        for name in names:
            for shard in range(backend.queue_shards()):
                while True:
                    reply = await backend.recover(name, shard, batch)
                    failed = await self._finalize_lost(name, reply.lost)
                    done += reply.recovered + failed
                    if reply.recovered + len(reply.lost) < batch:
                        break
        return done

    async def _release(self, lease: Lease, delay_ms: int, *, count_attempt: bool = True) -> None:
        delay = check_delay(delay_ms, self._config)
        key = TaskKey(lease.owner_id, lease.task_id)
        fence = Fence(queue=lease.queue, token=check_token(lease.token, lease.task_id))
        refused, stored = await self._queue_backend().release(
            LeaseRef(key=key, queue=fence.queue, token=fence.token),
            delay,
            count_attempt=count_attempt,
        )
        if refused:
            lost_lease(key, fence, refused)
        if stored is not None:
            lease._updated(self._owned(key, stored).record)

    async def _parent_results(self, lease: Lease) -> dict[str, JSONValue]:
        job = lease.task.job
        parents = () if job is None else job.parents
        keys = [TaskKey(lease.owner_id, parent) for parent in parents]
        stored = await self._backend.get_many(keys) if keys else []
        return {
            key.task_id: None if found is None else self._owned(key, found).record.result
            for key, found in zip(keys, stored, strict=True)
        }

    async def _claim_round(
        self,
        backend: QueueBackend,
        hints: QueueHints,
        name: str,
        wanted: int,
        lease_ms: int,
        worker: str,
    ) -> builtins.list[Lease]:
        """Visit the shards worth a visit, round-robin, until ``wanted`` tasks are leased."""
        got: builtins.list[Lease] = []
        batch = self._config.recovery_batch
        visits = hints.to_visit()
        if len(visits) > 1:
            # one round trip (per node) tells which shards have work now; claim only there
            dues = await backend.queue_due(name, [shard for shard, _ in visits])
            busy = []
            for (shard, notices), due in zip(visits, dues, strict=True):
                if due == 0:
                    busy.append((shard, notices))
                else:
                    hints.settle(shard, notices, due, True)
            visits = busy
        for shard, notices in visits:
            asked = wanted - len(got)
            reply = await backend.claim(name, shard, asked, lease_ms, worker, batch)
            hints.settle(shard, notices, reply.next_due_in_ms, len(reply.claimed) < asked)
            got += await self._taken(name, shard, reply, worker)
            if len(got) >= wanted:
                break
        return got

    async def _complete_and_claim(
        self,
        queue: str,
        shard: int,
        finished: builtins.list[tuple[Lease, JSONValue]],
        count: int,
        lease_ms: int,
        worker_id: str | None,
    ) -> tuple[builtins.list[TaskStoreError | bool], builtins.list[Lease]]:
        """A worker's round on one shard of ``queue``: complete, then claim, one round trip.

        Each of ``finished`` (leases of tasks of ``shard``, with their results) is
        completed ``completed`` under its lease, as ``Lease.complete`` would; then up to
        ``count`` tasks of the shard are leased (for ``lease_ms``). Returns, per finished
        lease, True (completed), the error its ``complete`` would raise for a lease
        found lost (``LeaseLost``, ``InvalidLeaseToken``), or False when this round did
        not judge it (the task not remembered, a conflict, a result the rules refuse):
        its holder sends that one alone (``Lease.complete``). And the new leases.

        Raises:
            StoreUnavailable: the store did not answer: the completions' outcome is
                unknown (each may be sent again alone, safely: a write is never applied
                twice), and tasks the claim may have leased are recovered once their
                leases run out.

        """
        backend = self._queue_backend()
        worker = check_worker_id(worker_id)
        outcomes: builtins.list[TaskStoreError | bool] = [False] * len(finished)
        sent: builtins.list[int] = []
        writes: builtins.list[CoreWrite] = []
        now = now_ms()
        for at, (lease, result) in enumerate(finished):
            key = TaskKey(lease.owner_id, lease.task_id)
            seen = self._cache.get(key)
            if seen is None or not seen.rewritable:
                continue
            try:
                updated = self._completion(TaskStatus.COMPLETED, None, result)(seen.record, now)
            except TaskStoreError:
                continue  # judged again, and said, by the lease's own write
            fence = Fence(queue=queue, token=check_token(lease.token, lease.task_id))
            sent.append(at)
            writes.append(core_write(key, seen, updated, now, fence))
        hints = self._hints.get(queue)
        notices = None if hints is None else hints.notices_of(shard)
        results, reply = await backend.complete_and_claim(
            queue, shard, writes, count, lease_ms, worker, self._config.recovery_batch
        )
        for at, write, result in zip(sent, writes, results, strict=True):
            if result.applied or result.current is None:
                self._cache.forget(write.key)  # ended (its worker reads it no more), or gone
            else:
                self._owned(write.key, result.current)
            if result.applied:
                outcomes[at] = True
            elif result.lease_lost and write.fence is not None:
                try:
                    lost_lease(write.key, write.fence, result.lease_lost)
                except TaskStoreError as refused:
                    outcomes[at] = refused
        if hints is not None and notices is not None and count > 0:
            hints.settle(shard, notices, reply.next_due_in_ms, len(reply.claimed) < count)
        return outcomes, await self._taken(queue, shard, reply, worker)

    async def _taken(
        self, name: str, shard: int, reply: ClaimReply, worker: str
    ) -> builtins.list[Lease]:
        """The leases a claim on ``shard`` of ``name`` took; the tasks it found lost failed."""
        leases = []
        for claimed in reply.claimed:
            record = self._owned(claimed.key, claimed.record).record
            leases.append(self._new_lease(record, claimed, name, worker or None, shard))
        await self._finalize_lost(name, reply.lost)
        return leases

    async def _finalize_lost(self, name: str, lost: builtins.list[LostJob]) -> int:
        """Fail the tasks whose attempts are used up; return how many this call failed.

        Each write is fenced on the lost state and token, so however many
        claimers and sweeps are handed the same task, it fails once; one that
        cannot be written now is handed out again later.
        """
        failed = 0
        for job in lost:
            message = _lost_message(job)
            try:
                await self._mutate(
                    job.key.task_id,
                    job.key.owner_id,
                    lambda record, now, message=message: change_status(  # type: ignore[misc]
                        record, TaskStatus.FAILED, message, now
                    ),
                    Fence(queue=name, token=job.token, finalize=True),
                )
            except TaskStoreError:
                continue  # failed by another, ended meanwhile, or not now: not this call's
            failed += 1
        return failed

    def _queue_backend(self) -> QueueBackend:
        backend = self._queued
        if backend is None:
            raise InvalidArgument(f"{type(self._backend).__name__} has no work queues")
        return backend

    async def _queue_hints(self, backend: QueueBackend, name: str) -> QueueHints:
        """The store's hints of ``name``, subscribed (once per store) before any read."""
        hints = self._hints.get(name)
        if hints is None:
            hints = self._hints.setdefault(name, QueueHints(backend.queue_shards()))
        if hints.watch is None:
            watch = backend.queue_watch(name, hints.notice)
            hints.watch = watch
            try:
                await watch.__aenter__()
            except BaseException:
                hints.watch = None
                raise
            hints.opened = True
        return hints

    def _new_lease(
        self,
        record: TaskRecord,
        claimed: ClaimedJob,
        queue: str,
        worker_id: str | None,
        shard: int,
    ) -> Lease:
        """The lease of a task just claimed from ``shard`` of ``queue``, writing via the store."""
        raise NotImplementedError  # GenericTaskStore makes them

    def _completion(
        self, status: TaskStatus | str, message: str | None, result: JSONValue
    ) -> Change:
        """The rule that ends a task with ``status``, ``message`` and ``result``, all checked.

        Raises InvalidArgument (or another ``TaskStoreError``) for a value the store refuses.
        """
        raise NotImplementedError  # GenericTaskStore has the rules


MAX_PARENTS = 10_000
"""The most tasks one ``submit`` may wait for (``after``)."""


def _parents(after: Sequence[str] | None, on_parent_failure: str, delay_ms: int) -> tuple[str, ...]:
    """A submit's checked parents, each once, in order."""
    if on_parent_failure not in ("cancel", "run"):
        raise InvalidArgument(
            f'on_parent_failure must be "cancel" or "run", not {on_parent_failure!r}'
        )
    if after is None:
        return ()
    if isinstance(after, str | bytes) or not isinstance(after, Sequence):
        raise InvalidArgument("after must be a list of task ids")
    parents = tuple(dict.fromkeys(check_id(parent, "after") for parent in after))
    if len(parents) > MAX_PARENTS:
        raise InvalidArgument(f"after names {len(parents)} tasks; at most {MAX_PARENTS}")
    if parents and delay_ms:
        raise InvalidArgument(
            "a task submitted after others is ready when they complete: no delay_ms or debounce_ms"
        )
    return parents


def _whole_limit(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise InvalidArgument(f"{name} must be a whole number from 1 to 1000000, got {value!r}")
    return value


def _limits_of(values: dict[str, float]) -> Limits:
    most, rate, burst = values.get("c"), values.get("r"), values.get("b")
    return Limits(
        max_concurrency=None if most is None else int(most),
        per_second=rate,
        burst=None if burst is None or rate is None else int(burst),
    )


def _flow_group(group: str | None, owner: str) -> str | None:
    """A submit's checked flow-control group: None for the owner's own."""
    if group is None:
        return None
    name = check_id(group, "group")
    if name == "":
        raise InvalidArgument("group must not be empty")
    return None if name == owner else name


def _lost_message(lost: LostJob) -> str:
    if lost.expired:
        return (
            f"worker lost: the lease of attempt {lost.attempt} of {lost.max_attempts} "
            "expired and no attempt is left"
        )
    return f"gave up: released after attempt {lost.attempt} of {lost.max_attempts}"


class QueueHints:
    """What a store knows of each shard of a queue it claims from, and who waits on it.

    A shard is "maybe" (worth a visit) from the start, after a notice and after
    the subscription was renewed; an empty claim makes it "empty until" the time
    the backend said it next needs a visit. A notice counter per shard makes a
    notice that lands during a claim survive that claim's empty answer.
    """

    def __init__(self, shards: int) -> None:
        """Every shard worth a visit."""
        self.shards = shards
        self.watch: QueueWatch | None = None
        self.opened = False
        self._lock = threading.Lock()
        self._maybe = set(range(shards))
        self._due: dict[int, float] = {}
        self._notices = [0] * shards
        self._waiters: set[Pokeable] = set()
        self._next = 0

    def notice(self, shard: int) -> None:
        """A shard may have work (called from any thread): wake every waiting claim."""
        with self._lock:
            self._maybe.add(shard)
            self._notices[shard] += 1
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.poke()

    def live(self) -> bool:
        """Whether the subscription is confirmed now, so the hints can be trusted."""
        watch = self.watch
        return self.opened and watch is not None and watch.live()

    def to_visit(self) -> list[tuple[int, int]]:
        """(shard, notice count) of the shards worth a visit now, round-robin from the last."""
        now = monotonic()
        trusted = self.live()
        with self._lock:
            start = self._next
            self._next = (start + 1) % self.shards
            order = [(start + step) % self.shards for step in range(self.shards)]
            return [
                (shard, self._notices[shard])
                for shard in order
                if not trusted
                or shard in self._maybe
                or (shard in self._due and self._due[shard] <= now)
            ]

    def notices_of(self, shard: int) -> int:
        """How many notices the shard has had: what ``settle`` compares with."""
        with self._lock:
            return self._notices[shard]

    def settle(self, shard: int, notices: int, next_due_in_ms: float | None, drained: bool) -> None:
        """Record a claim's answer: with nothing more to take, the shard is empty until due."""
        with self._lock:
            if next_due_in_ms is None:
                self._due.pop(shard, None)
            else:
                self._due[shard] = monotonic() + next_due_in_ms / 1000
            if drained and self._notices[shard] == notices:
                self._maybe.discard(shard)

    def pause(self) -> float | None:
        """Seconds until a shard is due again; None when none is."""
        with self._lock:
            if not self._due:
                return None
            return max(0.0, min(self._due.values()) - monotonic())

    def add_waiter(self, waiter: Pokeable) -> None:
        """Wake ``waiter`` at every notice."""
        with self._lock:
            self._waiters.add(waiter)

    def remove_waiter(self, waiter: Pokeable) -> None:
        """Stop waking ``waiter``."""
        with self._lock:
            self._waiters.discard(waiter)
