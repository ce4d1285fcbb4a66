"""GenericTaskStore: all domain logic over any StorageBackend."""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Any, cast

import anyio
import msgspec

from .._core.backend_types import (
    CoreWrite,
    CreateOutcome,
    DeleteOutcome,
    Fence,
    LeaseRef,
    LostJob,
    MergeOutcome,
    NewJob,
    NewTask,
    TaskKey,
    TaskRemoval,
    VariableMerge,
    VersionedRecord,
)
from .._core.clock import backoff_seconds, now_ms
from .._core.config import SecurityConfig, StoreConfig
from .._core.cursor import decode_cursor, encode_cursor
from .._core.errors import (
    ConcurrentModification,
    InvalidArgument,
    InvalidLeaseToken,
    LeaseLost,
    ResourceExhausted,
    StorageCorrupted,
    StoreUnavailable,
    TaskAlreadyExists,
    TaskExpired,
    TaskNotFound,
    TaskStoreError,
    UnsupportedFormat,
    VariableSizeExceeded,
    WaitTimeout,
)
from .._core.model import (
    FORMAT,
    FORMAT_MAJOR,
    Decoded,
    JobInfo,
    JSONValue,
    LeaseInfo,
    QueueStats,
    TaskPage,
    TaskRecord,
    datetime_from_ms,
    decode_page,
    decode_record,
    encode_core,
    encode_json,
    encode_variable_changes,
)
from .._core.record_cache import RecordCache
from .._core.rules import (
    change_message,
    change_status,
    check_result_size,
    complete,
    ensure_live,
    new_record,
    result_of,
    seconds_until_expiry,
    store_result,
)
from .._core.status import TaskStatus
from .._core.validation import (
    check_count,
    check_delay,
    check_id,
    check_owner,
    check_queue,
    check_status,
    check_status_message,
    check_timeout,
    check_token,
    check_wait,
    check_worker_id,
    clean_json_value,
    clean_variables,
    resolve_lease_ms,
    resolve_limit,
    resolve_max_attempts,
    resolve_ttl,
)
from .._core.wake import async_waker
from ._lease import Lease, QueueHints
from ._metrics import measure_operations
from ._protocols import QueueBackend, StorageBackend

_Change = Callable[[TaskRecord, int], TaskRecord]
_UNSUBSCRIBED_PAUSE = 0.05
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
_ID_ATTEMPTS = 3
_READ_PAUSE_FIRST = 0.025
_READ_PAUSE_MAX = 1.0


class GenericTaskStore:
    """A task store that keeps every domain rule and delegates storage to a backend.

    A variable merge is one write with no version check (merges of distinct keys
    commute). A status or result change is a compare-and-set on the core version
    that was read; on a conflict the store re-judges the rules against the record
    the conflict reply carries and retries at once, backing off (jittered) only
    after repeated conflicts, until ``config.cas_retries`` conflicts or
    ``config.cas_timeout_ms``.
    """

    def __init__(
        self,
        backend: StorageBackend,
        config: StoreConfig | None = None,
        security: SecurityConfig | None = None,
    ) -> None:
        """Wrap ``backend`` with the given limits (defaults when None)."""
        self._backend = backend
        self._config = config if config is not None else StoreConfig()
        self._security = security if security is not None else SecurityConfig()
        self._cache = RecordCache(self._config.record_cache_size)
        if self._config.require_noeviction:
            # a backend that can evict (Redis) has this hook; one that cannot has nothing to do
            require = getattr(backend, "require_noeviction", None)
            if callable(require):
                require()
        self._hints: dict[str, QueueHints] = {}
        self._queued = backend if isinstance(backend, QueueBackend) else None

    @classmethod
    def from_url(
        cls,
        url: str,
        config: StoreConfig | None = None,
        security: SecurityConfig | None = None,
        **backend_options: Any,
    ) -> GenericTaskStore:
        """Build a store on Redis or Redis Cluster at ``url``; see ``RedisBackend.from_url``.

        Nothing connects until the first call.
        """
        from ._connect import backend_from_url  # The store imports no concrete backend.

        return cls(backend_from_url(url, **backend_options), config, security)

    @property
    def config(self) -> StoreConfig:
        """The store's limits and defaults."""
        return self._config

    @property
    def security(self) -> SecurityConfig:
        """The store's owner quota and anonymous-access setting."""
        return self._security

    @property
    def backend(self) -> StorageBackend:
        """The storage backend this store writes to."""
        return self._backend

    async def __aenter__(self) -> GenericTaskStore:
        """Return the store itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the backend."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend and release its connections."""
        hints, self._hints = list(self._hints.values()), {}
        for hint in hints:
            watch, hint.watch = hint.watch, None
            if watch is not None and hint.opened:
                await watch.__aexit__(None, None, None)
        await self._backend.aclose()

    async def create(
        self,
        owner_id: str,
        request_method: str,
        ttl_ms: int | None = None,
        *,
        task_id: str | None = None,
    ) -> TaskRecord:
        """Create a task in status ``working``.

        Its id is a fresh UUID4, or ``task_id`` when given: taken atomically, so of
        concurrent creates with the same id exactly one succeeds. Ids are per
        owner: another owner's task with the same id is another task.

        Raises:
            InvalidArgument: a negative TTL, one above ``max_ttl_ms``, or a bad id
                (an empty ``task_id`` too).
            TaskAlreadyExists: the owner already has a task ``task_id`` (even an
                expired one not yet purged); nothing is written.
            AnonymousAccessDenied: an anonymous owner while anonymous access is off.
            ResourceExhausted: the owner already has ``max_tasks_per_owner`` tasks in progress.

        """
        owner = check_owner(owner_id, self._security)
        method = check_id(request_method, "request_method")
        chosen = None if task_id is None else check_id(task_id, "task_id")
        if chosen == "":
            raise InvalidArgument("task_id must not be empty")
        ttl = resolve_ttl(ttl_ms, self._config)
        return await self._create(owner, method, ttl, None, chosen)

    async def _create(
        self,
        owner: str,
        method: str,
        ttl: int | None,
        job: NewJob | None,
        chosen: str | None = None,
    ) -> TaskRecord:
        """Create a checked task, enqueued in the same step when ``job`` is given.

        Its id is ``chosen`` when given (``TaskAlreadyExists`` if taken), else a fresh UUID4.
        """
        for _ in range(_ID_ATTEMPTS):
            now = now_ms()
            record = new_record(owner, method, ttl, now, self._config, chosen)
            expires_at_ms = None if ttl is None else now + ttl
            created_key = TaskKey(owner, record.task.task_id)
            data = encode_core(record, now)
            outcome = await self._backend.create(
                NewTask(
                    key=created_key,
                    format=FORMAT,
                    data=data,
                    created_at_ms=now,
                    expires_at_ms=expires_at_ms,
                    purge_at_ms=(
                        None
                        if expires_at_ms is None
                        else expires_at_ms + self._config.expired_retention_ms
                    ),
                    max_live=self._security.max_tasks_per_owner,
                    now_ms=now,
                    job=job,
                )
            )
            if outcome is CreateOutcome.CREATED and job is not None:
                return _submitted(record, job, now)
            if outcome is CreateOutcome.CREATED:
                created = msgspec.structs.replace(record, version=1)
                self._cache.put(
                    created_key,
                    Decoded(created, 1, now, FORMAT, True, data, b"{}", None),
                    len(data),
                )
                return created
            if outcome is CreateOutcome.QUOTA_EXCEEDED:
                raise ResourceExhausted(self._security.max_tasks_per_owner or 0)
            if chosen is not None:
                raise TaskAlreadyExists(chosen)
        raise StorageCorrupted("could not allocate a unique task id")

    async def get(self, task_id: str, owner_id: str) -> TaskRecord:
        """Return a task; an expired one stays readable until it is purged.

        Raises:
            TaskNotFound: no such task for this owner.

        """
        key = self._key(task_id, owner_id)
        return self._owned(key, await self._backend.get(key)).record

    async def update_status(
        self,
        task_id: str,
        owner_id: str,
        status: TaskStatus | str,
        status_message: str | None = None,
    ) -> TaskRecord:
        """Move a task to ``status`` with ``status_message`` (None clears it).

        Raises:
            InvalidTransition: the state machine does not allow the move.
            TaskExpired: the task's TTL has run out.

        """
        return await self._update_status(task_id, owner_id, status, status_message, None)

    async def _update_status(
        self,
        task_id: str,
        owner_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        lease: Lease | None,
    ) -> TaskRecord:
        target = check_status(status)
        message = check_status_message(status_message, self._config)
        return await self._mutate(
            task_id,
            owner_id,
            lambda record, now: change_status(record, target, message, now),
            _fence_of(lease),
        )

    async def set_variables(
        self, task_id: str, owner_id: str, variables: dict[str, Any]
    ) -> TaskRecord:
        """Merge ``variables`` into the task's; a None value deletes that key.

        Raises:
            InvalidArgument: a value is not plain JSON within the depth and string limits.
            VariableSizeExceeded: the merged variables would exceed the size limit.

        """
        return await self._set_variables(task_id, owner_id, variables, None)

    async def _set_variables(
        self, task_id: str, owner_id: str, variables: dict[str, Any], lease: Lease | None
    ) -> TaskRecord:
        incoming = clean_variables(variables, self._config)
        key = self._key(task_id, owner_id)
        fence = _fence_of(lease)
        sets, deletes = encode_variable_changes(incoming)
        merge = VariableMerge(
            key=key,
            format_major=FORMAT_MAJOR,
            sets=sets,
            deletes=deletes,
            max_bytes=self._config.max_variable_size_bytes,
            now_ms=now_ms(),
            fence=fence,
        )
        result = await self._backend.merge_variables(merge)
        outcome = result.outcome
        if outcome is MergeOutcome.APPLIED:
            return self._owned(key, result.current).record
        if fence is not None and outcome in (MergeOutcome.LEASE_LOST, MergeOutcome.NOT_FOUND):
            _lost_lease(key, fence, result.lease_lost or "missing")
        if outcome is MergeOutcome.EXPIRED:
            raise TaskExpired(key.task_id)
        if outcome is MergeOutcome.TOO_LARGE:
            raise VariableSizeExceeded(self._config.max_variable_size_bytes, result.size)
        if outcome is MergeOutcome.OTHER_FORMAT:
            raise UnsupportedFormat(key.task_id, result.format, FORMAT)
        self._cache.forget(key)
        raise TaskNotFound(key.task_id)

    async def set_result(self, task_id: str, owner_id: str, result: JSONValue) -> None:
        """Attach ``result`` to a task; once a terminal task has a result, it is final.

        Raises:
            InvalidArgument: the result is None, not plain JSON, or already final.
            VariableSizeExceeded: the result is above ``max_result_size_bytes``.

        """
        value = self._clean_result(result)
        await self._mutate(task_id, owner_id, lambda record, now: store_result(record, value, now))

    async def get_result(self, task_id: str, owner_id: str) -> JSONValue:
        """Return the result of a terminal task.

        Raises:
            NotReady: the task is not terminal yet.
            NoResult: the task is terminal without a result (cancelled, say).
            TaskExpired: the task's TTL has run out.

        """
        record = await self.get(task_id, owner_id)
        return result_of(record, now_ms())

    async def complete_with_result(
        self,
        task_id: str,
        owner_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        result: JSONValue,
    ) -> TaskRecord:
        """Move a task to a terminal status and attach ``result``: both or neither.

        Raises:
            InvalidArgument: ``status`` is not terminal, or the result is invalid.
            InvalidTransition: the task is already terminal.

        """
        return await self._complete_with_result(
            task_id, owner_id, status, status_message, result, None
        )

    async def _complete_with_result(
        self,
        task_id: str,
        owner_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        result: JSONValue,
        lease: Lease | None,
    ) -> TaskRecord:
        target = check_status(status)
        if not target.is_terminal:
            raise InvalidArgument(
                f"complete_with_result needs a terminal status, not {target.value!r}"
            )
        message = check_status_message(status_message, self._config)
        value = self._clean_result(result)
        return await self._mutate(
            task_id,
            owner_id,
            lambda record, now: complete(record, target, message, value, now),
            _fence_of(lease),
        )

    async def list(
        self, owner_id: str, cursor: str | None = None, limit: int | None = None
    ) -> TaskPage:
        """Return one page of the owner's tasks, newest first.

        Paging visits every task that exists during the whole listing exactly once.

        Raises:
            InvalidArgument: a malformed or foreign cursor, or a limit out of range.

        """
        owner = check_owner(owner_id, self._security)
        size = resolve_limit(limit, self._config)
        after = None if cursor is None else decode_cursor(owner, cursor)
        page = await self._backend.list_page(owner, after, size)
        # records remembered at their version are taken as they are; the others decode in
        # one pass, then take their places
        hits: builtins.list[TaskRecord | None] = []
        fresh: builtins.list[VersionedRecord] = []
        earlier: builtins.list[Decoded | None] = []
        keys: builtins.list[TaskKey] = []
        remembered = self._cache.get
        for stored in page.records:
            key = TaskKey(owner, stored.task_id)
            known = remembered(key)
            if known is not None and (known.source is stored or _same(known, stored)):
                hits.append(known.record)
                continue
            hits.append(None)
            fresh.append(stored)
            earlier.append(known)
            keys.append(key)
        if fresh:
            decoded = decode_page(fresh, owner, earlier)
            self._cache.put_many(
                (key, one, len(one.data) + len(one.variables_data))
                for key, one in zip(keys, decoded, strict=True)
            )
            made = iter(decoded)
            tasks = [next(made).record if hit is None else hit for hit in hits]
        else:
            tasks = cast("builtins.list[TaskRecord]", hits)  # every place is taken
        next_cursor = (
            None if page.next_position is None else encode_cursor(owner, page.next_position)
        )
        return TaskPage(tasks=tasks, next_cursor=next_cursor)

    async def cancel(self, task_id: str, owner_id: str) -> TaskRecord:
        """Move a task to ``cancelled``.

        Raises:
            InvalidTransition: the task is already terminal.

        """
        return await self._mutate(
            task_id,
            owner_id,
            lambda record, now: change_status(record, TaskStatus.CANCELLED, None, now),
        )

    async def cleanup_expired(self) -> int:
        """Purge every expired task now, without waiting for its retention; return the count.

        With a queue backend it also sweeps the queues' expired leases (``recover_leases``).
        """
        purged = await self._backend.purge_expired(now_ms())
        if self._queued is not None:
            await self.recover_leases()
        return purged

    async def wait(
        self,
        task_id: str,
        owner_id: str,
        *,
        after_version: int | None = None,
        until_terminal: bool = False,
        timeout: float | None = None,
    ) -> TaskRecord:
        """Wait, without polling, for a task to change or to end; return it then.

        Returns as soon as the task's version is above ``after_version`` (None:
        above the version it has when the wait starts), or, with
        ``until_terminal``, as soon as it is terminal; at once if that already
        holds. Other processes' writes wake it within milliseconds.

        While the server cannot be read (a restart, a failover) the wait goes on
        and reads again once it can.

        Raises:
            WaitTimeout: ``timeout`` seconds passed first (also a ``TimeoutError``).
            StoreUnavailable: the change subscription could not be set up (the
                server is down as the wait starts), or the backend was closed.
            TaskNotFound: no such task for this owner, or it was purged meanwhile.
            TaskExpired: the task's TTL ran out before it did what was waited for.
            InvalidArgument: a negative version or timeout, or both ``after_version``
                and ``until_terminal``.

        """
        key = self._key(task_id, owner_id)
        check_wait(after_version, until_terminal, timeout)
        seconds = check_timeout(timeout)
        deadline = None if seconds is None else monotonic() + seconds
        baseline = after_version
        if baseline is None and not until_terminal:
            # the version as the call starts; a change before the subscription is in place
            # is still caught, by the read that follows it
            baseline = (await self._read(key)).record.version
        async with self._backend.watch(key) as watch:
            failures = 0
            while True:
                try:
                    record = (await self._read(key)).record
                except StoreUnavailable as exc:
                    # a server restarting or failing over: keep waiting, and read again
                    # when told or after a pause; a closed backend (no cause) ends the wait
                    if exc.__cause__ is None:
                        raise
                    failures += 1
                    pause = min(_READ_PAUSE_MAX, _READ_PAUSE_FIRST * 2**failures)
                    if deadline is not None:
                        left = deadline - monotonic()
                        if left <= 0:
                            raise WaitTimeout(key.task_id, timeout or 0.0) from exc
                        pause = min(pause, left)
                    await watch.wait(pause)
                    continue
                failures = 0
                if until_terminal:
                    done = record.task.status.is_terminal
                else:
                    done = baseline is not None and record.version > baseline
                if done:
                    return record
                # the deadline is checked after the read: a wait that holds returns
                now = now_ms()
                ensure_live(record, now)
                # wake when the TTL runs out: the task cannot change after that
                pause = seconds_until_expiry(record, now) + 0.001
                if deadline is not None:
                    left = deadline - monotonic()
                    if left <= 0:
                        raise WaitTimeout(key.task_id, timeout or 0.0)
                    pause = min(pause, left)
                await watch.wait(None if math.isinf(pause) else pause)

    async def wait_for_result(
        self, task_id: str, owner_id: str, *, timeout: float | None = None
    ) -> JSONValue:
        """Wait until the task is terminal, then return its result as ``get_result`` does.

        Raises:
            NoResult: the task ended without a result (cancelled, say).
            WaitTimeout: ``timeout`` seconds passed first.
            TaskNotFound: no such task, or it was purged meanwhile.
            TaskExpired: the task's TTL ran out.

        """
        record = await self.wait(task_id, owner_id, until_terminal=True, timeout=timeout)
        return result_of(record, now_ms())

    # --- work queues ------------------------------------------------------------------------

    async def submit(
        self,
        owner_id: str,
        request_method: str,
        params: JSONValue = None,
        *,
        queue: str = "default",
        ttl_ms: int | None = None,
        delay_ms: int = 0,
        max_attempts: int | None = None,
    ) -> TaskRecord:
        """Create a task (status ``working``) and enqueue it, in one atomic step.

        ``params`` is the job's input (plain JSON, up to ``max_params_bytes``),
        handed to the worker that claims it. The task is claimable ``delay_ms``
        after submission, by up to ``max_attempts`` claims
        (``config.default_max_attempts`` when None). The owner's quota counts it
        like any created task.

        Raises:
            InvalidArgument: a bad queue name, delay, attempt count, TTL or id, or params
                that are not plain JSON (``VariableSizeExceeded`` when too large).
            AnonymousAccessDenied: an anonymous owner while anonymous access is off.
            ResourceExhausted: the owner already has ``max_tasks_per_owner`` tasks in progress.

        """
        owner = check_owner(owner_id, self._security)
        method = check_id(request_method, "request_method")
        ttl = resolve_ttl(ttl_ms, self._config)
        name = check_queue(queue)
        delay = check_delay(delay_ms, self._config)
        attempts = resolve_max_attempts(max_attempts, self._config)
        encoded = encode_json(clean_json_value(params, self._config, "params"))
        if len(encoded) > self._config.max_params_bytes:
            raise VariableSizeExceeded(self._config.max_params_bytes, len(encoded), "params")
        self._queue_backend()
        job = NewJob(queue=name, params=encoded, max_attempts=attempts, delay_ms=delay)
        return await self._create(owner, method, ttl, job)

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
                    pause = min(_READ_PAUSE_MAX, _READ_PAUSE_FIRST * 2**failures)
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
                TaskKey(lease.owner_id, lease.task_id),
                lease.queue,
                check_token(lease.token, lease.task_id),
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
        """The names of every queue a task was ever submitted to, sorted."""
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
            LeaseRef(key, fence.queue, fence.token), delay, count_attempt=count_attempt
        )
        if refused:
            _lost_lease(key, fence, refused)
        if stored is not None:
            lease._updated(self._owned(key, stored).record)

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
            for claimed in reply.claimed:
                record = self._owned(claimed.key, claimed.record).record
                got.append(
                    Lease(
                        self,
                        record,
                        queue=name,
                        token=claimed.token,
                        attempt=claimed.attempt,
                        expires_at_ms=claimed.deadline_ms,
                        worker_id=worker or None,
                    )
                )
            await self._finalize_lost(name, reply.lost)
            if len(got) >= wanted:
                break
        return got

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

    async def _fenced_read(self, key: TaskKey, fence: Fence | None) -> Decoded:
        try:
            return await self._read(key)
        except TaskNotFound:
            if fence is None:
                raise
            _lost_lease(key, fence, "missing")
            raise

    async def delete(self, task_id: str, owner_id: str) -> bool:
        """Remove a task and its index entries at once, whatever its status; True if removed.

        Its waiters wake and find it gone (``TaskNotFound``), as after a purge. A
        task of another owner is not touched: False, as for a missing one. A task
        that changes while it is being deleted is read again and deleted as it is
        then, up to ``cas_retries`` times.

        Raises:
            ConcurrentModification: the task kept changing.
            StoreUnavailable: the store could not be reached; ``outcome_unknown``
                when the task may or may not have been removed.

        """
        key = self._key(task_id, owner_id)
        for _ in range(self._config.cas_retries + 1):
            try:
                seen = await self._read(key)
            except TaskNotFound:
                return False
            outcome = await self._backend.delete(
                TaskRemoval(key=key, created_at_ms=seen.created_at_ms, data=seen.data)
            )
            if outcome is not DeleteOutcome.CHANGED:
                self._cache.forget(key)
                return outcome is DeleteOutcome.DELETED
        raise ConcurrentModification(key.task_id, self._config.cas_retries + 1)

    async def set_status_message(
        self, task_id: str, owner_id: str, status_message: str | None
    ) -> TaskRecord:
        """Replace a task's status message (None clears it); its status stays as it is.

        A progress note ("3 of 10 files done") on a task that goes on working, or a
        word added to a task that ended. ``update_status`` always changes the
        status; this never does. The task's version goes up and its waiters wake.

        Raises:
            InvalidArgument: the message is not a str or is too long.
            TaskExpired: the task's TTL has run out.
            TaskNotFound: no such task for this owner.

        """
        return await self._set_status_message(task_id, owner_id, status_message, None)

    async def _set_status_message(
        self, task_id: str, owner_id: str, status_message: str | None, lease: Lease | None
    ) -> TaskRecord:
        message = check_status_message(status_message, self._config)
        return await self._mutate(
            task_id,
            owner_id,
            lambda record, now: change_message(record, message, now),
            _fence_of(lease),
        )

    def _key(self, task_id: str, owner_id: str) -> TaskKey:
        owner = check_owner(owner_id, self._security)
        return TaskKey(owner, check_id(task_id, "task_id"))

    def _clean_result(self, result: JSONValue) -> JSONValue:
        if result is None:
            raise InvalidArgument("result must not be None")
        value = clean_json_value(result, self._config, "result")
        check_result_size(value, self._config)
        return value

    def _owned(
        self, key: TaskKey, stored: VersionedRecord | None, like: Decoded | None = None
    ) -> Decoded:
        """Decode what the backend holds at ``key`` and remember it; TaskNotFound if none.

        ``like`` is what the task is expected to hold (the record a write just
        made): the parts stored as it says are taken from it, not decoded again.
        Without it, the remembered record serves the same way.
        """
        if stored is None:
            self._cache.forget(key)
            raise TaskNotFound(key.task_id)
        known = self._cache.get(key) if like is None else like
        if known is not None and _same(known, stored):
            # what this process decoded, or wrote, at this very version: no decoding again
            if like is not None:
                self._cache.put(key, like, len(stored.data) + len(stored.variables))
            return known
        decoded = decode_record(stored, key.owner_id, key.task_id, known)
        self._cache.put(key, decoded, len(stored.data) + len(stored.variables))
        return decoded

    async def _read(self, key: TaskKey) -> Decoded:
        return self._owned(key, await self._backend.get(key))

    async def _mutate(
        self, task_id: str, owner_id: str, change: _Change, fence: Fence | None = None
    ) -> TaskRecord:
        """Apply ``change`` to the core record by compare-and-set, from the remembered record.

        A domain error is raised only when judged against a record known to be
        current: one judged against a remembered record is checked again after a
        fresh read. On a conflict the reply carries the current record: the first
        retry goes at once, later ones after a jittered pause, until
        ``cas_retries`` conflicts or ``cas_timeout_ms`` have passed.
        """
        key = self._key(task_id, owner_id)
        seen = self._cache.get(key)
        current = seen is None
        if seen is None:
            seen = await self._fenced_read(key, fence)
        conflicts = 0
        deadline: int | None = None
        while True:
            now = now_ms()
            try:
                updated = change(seen.record, now)
            except TaskStoreError:
                if not current:
                    seen, current = await self._fenced_read(key, fence), True
                try:
                    updated = change(seen.record, now)
                except TaskStoreError:
                    # a holder told the rules said no: say why its lease is lost, if it is
                    _judge_lease(key, seen.record, fence)
                    raise
            if not seen.rewritable:
                if not current:
                    seen, current = await self._read(key), True
                    continue
                raise UnsupportedFormat(key.task_id, seen.format, FORMAT)
            data = encode_core(updated, seen.created_at_ms)
            job = seen.record.job
            result = await self._backend.compare_and_set(
                CoreWrite(
                    key=key,
                    expected_core_version=seen.core_version,
                    format=FORMAT,
                    data=data,
                    created_at_ms=seen.created_at_ms,
                    terminal=updated.task.status.is_terminal,
                    now_ms=now,
                    fence=fence,
                    queue=None if job is None else job.queue,
                    status=updated.task.status.value,
                )
            )
            if result.lease_lost and fence is not None:
                if result.current is not None:
                    self._owned(key, result.current)
                _lost_lease(key, fence, result.lease_lost)
            if result.applied and job is not None:
                # a queued task's write may also move its job part: decode what it holds
                return self._owned(key, result.current).record
            if result.applied:
                # the task now holds the core just written: unless others wrote meanwhile
                # (then its version is further on, and only what they changed decodes),
                # it is the record written, one version on
                written = Decoded(
                    msgspec.structs.replace(updated, version=seen.record.version + 1),
                    seen.core_version + 1,
                    seen.created_at_ms,
                    FORMAT,
                    True,
                    data,
                    seen.variables_data,
                    now,
                )
                return self._owned(key, result.current, written).record
            stale_memory = not current
            if result.current is None and fence is not None:
                self._cache.forget(key)
                _lost_lease(key, fence, "missing")
            seen, current = self._owned(key, result.current), True
            if stale_memory:
                continue  # the remembered record was old: not a conflict, just news
            conflicts += 1
            if deadline is None:
                deadline = now + self._config.cas_timeout_ms
            if conflicts > self._config.cas_retries or now_ms() >= deadline:
                break
            if conflicts > 1:
                # lost more than once: back off, then take the newest record this process saw
                await anyio.sleep(backoff_seconds(conflicts - 2))
                newer = self._cache.get(key)
                if newer is not None and newer.record.version > seen.record.version:
                    seen = newer
        raise ConcurrentModification(key.task_id, conflicts)


def _fence_of(lease: Lease | None) -> Fence | None:
    if lease is None:
        return None
    return Fence(queue=lease.queue, token=check_token(lease.token, lease.task_id))


def _lost_lease(key: TaskKey, fence: Fence, reason: str) -> None:
    """Raise what a refused fenced write means for its caller."""
    if reason == "forged":
        raise InvalidLeaseToken(key.task_id, fence.token)
    raise LeaseLost(key.task_id, reason)


def _judge_lease(key: TaskKey, record: TaskRecord, fence: Fence | None) -> None:
    """For a holder's write the rules refused: raise LeaseLost if the record shows it lost."""
    if fence is None or fence.finalize:
        return
    job = record.job
    if job is None or job.queue != fence.queue:
        _lost_lease(key, fence, "missing")
        return
    status = record.task.status
    if fence.token > job.token:
        _lost_lease(key, fence, "forged")
    if status.is_terminal:
        _lost_lease(key, fence, status.value)
    if fence.token < job.token:
        _lost_lease(key, fence, "reclaimed")
    if job.state != "leased":
        _lost_lease(key, fence, "expired")


def _submitted(record: TaskRecord, job: NewJob, now: int) -> TaskRecord:
    """The record of a task ``submit`` just created (its ready time by this process's clock)."""
    ready_at = now + job.delay_ms
    return msgspec.structs.replace(
        record,
        version=1,
        params=msgspec.json.decode(job.params),
        job=JobInfo(
            queue=job.queue,
            state="delayed" if job.delay_ms else "ready",
            attempt=0,
            max_attempts=job.max_attempts,
            token=0,
            worker_id=None,
            lease_expires_at=None,
            ready_at=datetime_from_ms(ready_at),
        ),
    )


def _lost_message(lost: LostJob) -> str:
    if lost.expired:
        return (
            f"worker lost: the lease of attempt {lost.attempt} of {lost.max_attempts} "
            "expired and no attempt is left"
        )
    return f"gave up: released after attempt {lost.attempt} of {lost.max_attempts}"


def _same(known: Decoded, stored: VersionedRecord) -> bool:
    """Whether a remembered record is the one ``stored`` decodes to.

    Every write moves the task version on, so equal versions (and format) mean
    equal contents.
    """
    return known.source is stored or (
        known.record.version == stored.version
        and known.core_version == stored.core_version
        and known.format == stored.format
    )


measure_operations(GenericTaskStore)  # with OpenTelemetry installed only (the otel extra)
