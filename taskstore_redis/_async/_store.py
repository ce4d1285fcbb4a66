"""GenericTaskStore: task operations and waiting over any StorageBackend (queues: _queues.py)."""

from __future__ import annotations

import builtins
import math
from time import monotonic
from types import TracebackType
from typing import Any, cast

from .._core.backend_types import (
    ClaimedJob,
    DeleteOutcome,
    Fence,
    MergeOutcome,
    TaskKey,
    TaskRemoval,
    VariableMerge,
    VersionedRecord,
)
from .._core.clock import now_ms
from .._core.config import SecurityConfig, StoreConfig
from .._core.cursor import decode_cursor, encode_cursor
from .._core.errors import (
    ConcurrentModification,
    InvalidArgument,
    StoreUnavailable,
    TaskExpired,
    TaskNotFound,
    UnsupportedFormat,
    VariableSizeExceeded,
    WaitTimeout,
)
from .._core.model import (
    FORMAT,
    FORMAT_MAJOR,
    Decoded,
    JSONValue,
    TaskPage,
    TaskRecord,
    decode_page,
    encode_variable_changes,
)
from .._core.rules import (
    change_message,
    change_status,
    check_result_size,
    complete,
    ensure_live,
    result_of,
    seconds_until_expiry,
    store_result,
)
from .._core.status import TaskStatus
from .._core.validation import (
    check_id,
    check_owner,
    check_status,
    check_status_message,
    check_timeout,
    check_token,
    check_wait,
    clean_json_value,
    clean_variables,
    resolve_limit,
    resolve_ttl,
)
from ._engine import READ_PAUSE_FIRST, READ_PAUSE_MAX, Change, lost_lease, same_record
from ._lease import Lease
from ._metrics import measure_operations
from ._protocols import StorageBackend
from ._schedules import ScheduleOperations


class GenericTaskStore(ScheduleOperations):
    """A task store that keeps every domain rule and delegates storage to a backend.

    A variable merge is one write with no version check (merges of distinct keys
    commute). A status or result change is a compare-and-set on the core version
    that was read; on a conflict the store re-judges the rules against the record
    the conflict reply carries and retries at once, backing off (jittered) only
    after repeated conflicts, until ``config.cas_retries`` conflicts or
    ``config.cas_timeout_ms``.

    The task operations are here; the schedules come from ``ScheduleOperations``
    (``_schedules.py``), the work-queue operations from ``QueueOperations``
    (``_queues.py``), the compare-and-set engine from ``TaskEngine`` (``_engine.py``).
    """

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
        await self._close_queue_watches()
        await self._backend.aclose()

    async def create(
        self,
        request_method: str,
        ttl_ms: int | None = None,
        *,
        owner_id: str,
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

    async def get(self, task_id: str, *, owner_id: str) -> TaskRecord:
        """Return a task; an expired one stays readable until it is purged.

        Raises:
            TaskNotFound: no such task for this owner.

        """
        key = self._key(task_id, owner_id)
        return self._owned(key, await self._backend.get(key)).record

    async def update_status(
        self,
        task_id: str,
        status: TaskStatus | str,
        status_message: str | None = None,
        *,
        owner_id: str,
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
        self, task_id: str, variables: dict[str, Any], *, owner_id: str
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
            lost_lease(key, fence, result.lease_lost or "missing")
        if outcome is MergeOutcome.EXPIRED:
            raise TaskExpired(key.task_id)
        if outcome is MergeOutcome.TOO_LARGE:
            raise VariableSizeExceeded(self._config.max_variable_size_bytes, result.size)
        if outcome is MergeOutcome.OTHER_FORMAT:
            raise UnsupportedFormat(key.task_id, result.format, FORMAT)
        self._cache.forget(key)
        raise TaskNotFound(key.task_id)

    async def set_result(self, task_id: str, result: JSONValue, *, owner_id: str) -> None:
        """Attach ``result`` to a task; once a terminal task has a result, it is final.

        Raises:
            InvalidArgument: the result is None, not plain JSON, or already final.
            VariableSizeExceeded: the result is above ``max_result_size_bytes``.

        """
        value = self._clean_result(result)
        await self._mutate(task_id, owner_id, lambda record, now: store_result(record, value, now))

    async def get_result(self, task_id: str, *, owner_id: str) -> JSONValue:
        """Return the result of a terminal task.

        Raises:
            NotReady: the task is not terminal yet.
            NoResult: the task is terminal without a result (cancelled, say).
            TaskExpired: the task's TTL has run out.

        """
        record = await self.get(task_id, owner_id=owner_id)
        return result_of(record, now_ms())

    async def complete_with_result(
        self,
        task_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        result: JSONValue,
        *,
        owner_id: str,
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
        change = self._completion(status, status_message, result)
        return await self._mutate(task_id, owner_id, change, _fence_of(lease))

    def _completion(
        self, status: TaskStatus | str, status_message: str | None, result: JSONValue
    ) -> Change:
        target = check_status(status)
        if not target.is_terminal:
            raise InvalidArgument(
                f"complete_with_result needs a terminal status, not {target.value!r}"
            )
        message = check_status_message(status_message, self._config)
        value = self._clean_result(result)
        return lambda record, now: complete(record, target, message, value, now)

    async def list(
        self, *, owner_id: str, cursor: str | None = None, limit: int | None = None
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
            if known is not None and (known.source is stored or same_record(known, stored)):
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

    async def tasks_in_progress(self, *, owner_id: str) -> int:
        """How many of the owner's tasks are neither terminal nor expired.

        What ``SecurityConfig.max_tasks_per_owner`` is held against when a task is
        created or submitted. One read (a ``ZCOUNT`` on Redis).

        Raises:
            InvalidArgument: a bad owner id.

        """
        owner = check_owner(owner_id, self._security)
        return await self._backend.in_progress(owner, now_ms())

    async def cancel(self, task_id: str, *, owner_id: str) -> TaskRecord:
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
        *,
        owner_id: str,
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
                    pause = min(READ_PAUSE_MAX, READ_PAUSE_FIRST * 2**failures)
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
        self, task_id: str, *, owner_id: str, timeout: float | None = None
    ) -> JSONValue:
        """Wait until the task is terminal, then return its result as ``get_result`` does.

        Raises:
            NoResult: the task ended without a result (cancelled, say).
            WaitTimeout: ``timeout`` seconds passed first.
            TaskNotFound: no such task, or it was purged meanwhile.
            TaskExpired: the task's TTL ran out.

        """
        record = await self.wait(task_id, owner_id=owner_id, until_terminal=True, timeout=timeout)
        return result_of(record, now_ms())

    async def delete(self, task_id: str, *, owner_id: str) -> bool:
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
        self, task_id: str, status_message: str | None, *, owner_id: str
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

    def _clean_result(self, result: JSONValue) -> JSONValue:
        if result is None:
            raise InvalidArgument("result must not be None")
        value = clean_json_value(result, self._config, "result")
        check_result_size(value, self._config)
        return value

    def _new_lease(
        self,
        record: TaskRecord,
        claimed: ClaimedJob,
        queue: str,
        worker_id: str | None,
        shard: int,
    ) -> Lease:
        lease = Lease(
            self,
            record,
            queue=queue,
            token=claimed.token,
            attempt=claimed.attempt,
            expires_at_ms=claimed.deadline_ms,
            worker_id=worker_id,
        )
        lease._shard = shard
        return lease


def _fence_of(lease: Lease | None) -> Fence | None:
    if lease is None:
        return None
    return Fence(queue=lease.queue, token=check_token(lease.token, lease.task_id))


measure_operations(GenericTaskStore)  # with OpenTelemetry installed only (the otel extra)
