"""The compare-and-set engine under the store: reading, creating and changing one task.

``TaskEngine`` holds the backend, the limits and the records this process remembers;
the store's operations (``GenericTaskStore``) and its queue operations build on it.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import msgspec

from .._core.backend_types import (
    CasResult,
    CoreWrite,
    CreateOutcome,
    Duplicate,
    Fence,
    MissingParent,
    NewJob,
    NewTask,
    TaskKey,
    VersionedRecord,
)
from .._core.clock import backoff_seconds, now_ms
from .._core.config import SecurityConfig, StoreConfig
from .._core.errors import (
    ConcurrentModification,
    InvalidArgument,
    InvalidLeaseToken,
    LeaseLost,
    ResourceExhausted,
    StorageCorrupted,
    TaskAlreadyExists,
    TaskNotFound,
    TaskStoreError,
    UnsupportedFormat,
)
from .._core.model import (
    FORMAT,
    Decoded,
    JobInfo,
    TaskRecord,
    datetime_from_ms,
    decode_record,
    encode_cancelled_by_parent,
    encode_core,
)
from .._core.record_cache import RecordCache
from .._core.rules import new_record
from .._core.validation import check_id, check_owner
from ._protocols import StorageBackend

Change = Callable[[TaskRecord, int], TaskRecord]
"""A domain rule applied to the core record: (record, now in ms) -> the record changed."""
_ID_ATTEMPTS = 3
READ_PAUSE_FIRST = 0.025
"""Seconds before the first read again after the server could not be read; doubles each time."""
READ_PAUSE_MAX = 1.0
"""Seconds between reads again at most."""


class TaskEngine:
    """Reads, creates and compare-and-sets one task at a time, over any StorageBackend.

    A status or result change is a compare-and-set on the core version that was
    read; on a conflict the engine re-judges the rules against the record the
    conflict reply carries and retries at once, backing off (jittered) only after
    repeated conflicts, until ``config.cas_retries`` conflicts or
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
            record, task = self._new_task(owner, method, ttl, job, now, chosen)
            created_key, data = task.key, task.data
            outcome = await self._backend.create(task)
            if isinstance(outcome, MissingParent):
                raise InvalidArgument(
                    f"after: task {outcome.task_id!r} is no live task this owner submitted to "
                    "a queue; nothing was written"
                )
            if outcome is CreateOutcome.CANCELLED or (
                outcome is CreateOutcome.CREATED and job is not None and job.after
            ):  # cancelled at once, or waiting or ready as its parents stand: as stored
                return self._owned(created_key, await self._backend.get(created_key)).record
            if isinstance(outcome, Duplicate):
                held = await self._backend.get(TaskKey(owner, outcome.task_id))
                if held is None:  # gone since: the key is free again
                    continue
                return self._owned(TaskKey(owner, outcome.task_id), held).record
            if outcome is CreateOutcome.CREATED and job is not None:
                return submitted(record, job, now)
            if outcome is CreateOutcome.CREATED:
                created = msgspec.structs.replace(record, version=1)
                self._cache.put(
                    created_key,
                    Decoded(
                        record=created,
                        core_version=1,
                        created_at_ms=now,
                        format=FORMAT,
                        rewritable=True,
                        data=data,
                        variables_data=b"{}",
                        updated_at_ms=None,
                    ),
                    len(data),
                )
                return created
            if outcome is CreateOutcome.QUOTA_EXCEEDED:
                raise ResourceExhausted(self._security.max_tasks_per_owner or 0)
            if chosen is not None:
                raise TaskAlreadyExists(chosen)
        raise StorageCorrupted("could not allocate a unique task id")

    def _new_task(
        self,
        owner: str,
        method: str,
        ttl: int | None,
        job: NewJob | None,
        now: int,
        chosen: str | None = None,
    ) -> tuple[TaskRecord, NewTask]:
        """A checked task's record (id ``chosen``, else a fresh UUID4) and what creates it."""
        record = new_record(owner, method, ttl, now, self._config, chosen)
        expires_at_ms = None if ttl is None else now + ttl
        if job is not None and job.after:
            job = msgspec.structs.replace(job, cancelled=encode_cancelled_by_parent(record, now))
        task = NewTask(
            key=TaskKey(owner, record.task.task_id),
            format=FORMAT,
            data=encode_core(record, now),
            created_at_ms=now,
            expires_at_ms=expires_at_ms,
            purge_at_ms=(
                None if expires_at_ms is None else expires_at_ms + self._config.expired_retention_ms
            ),
            max_live=self._security.max_tasks_per_owner,
            now_ms=now,
            job=job,
        )
        return record, task

    def _key(self, task_id: str, owner_id: str) -> TaskKey:
        owner = check_owner(owner_id, self._security)
        return TaskKey(owner, check_id(task_id, "task_id"))

    def _owned(
        self,
        key: TaskKey,
        stored: VersionedRecord | None,
        like: Decoded | None = None,
        *,
        whole: bool = True,
    ) -> Decoded:
        """Decode what the backend holds at ``key`` and remember it; TaskNotFound if none.

        ``like`` is what the task is expected to hold (the record a write just
        made): the parts stored as it says are taken from it, not decoded again.
        Without it, the remembered record serves the same way. ``whole`` False: ``like``
        holds the core and variables only, not the queue part, which is decoded.
        """
        if stored is None:
            self._cache.forget(key)
            raise TaskNotFound(key.task_id)
        known = self._cache.get(key) if like is None else like
        if whole and known is not None and same_record(known, stored):
            # what this process decoded, or wrote, at this very version: no decoding again
            if like is not None:
                self._cache.put(key, like, len(stored.data) + len(stored.variables))
            return known
        decoded = decode_record(stored, key.owner_id, key.task_id, known)
        self._cache.put(key, decoded, len(stored.data) + len(stored.variables))
        return decoded

    async def _read(self, key: TaskKey) -> Decoded:
        return self._owned(key, await self._backend.get(key))

    async def _fenced_read(self, key: TaskKey, fence: Fence | None) -> Decoded:
        try:
            return await self._read(key)
        except TaskNotFound:
            if fence is None:
                raise
            lost_lease(key, fence, "missing")
            raise

    async def _mutate(
        self, task_id: str, owner_id: str, change: Change, fence: Fence | None = None
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
            write = core_write(key, seen, updated, now, fence)
            result = await self._backend.compare_and_set(write)
            if result.lease_lost and fence is not None:
                if result.current is not None:
                    self._owned(key, result.current)
                lost_lease(key, fence, result.lease_lost)
            if result.applied:
                return self._applied(seen, updated, write, result)
            stale_memory = not current
            if result.current is None and fence is not None:
                self._cache.forget(key)
                lost_lease(key, fence, "missing")
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

    def _applied(
        self, seen: Decoded, updated: TaskRecord, write: CoreWrite, result: CasResult
    ) -> TaskRecord:
        """The task after ``write`` (made from ``seen``, changed to ``updated``) was applied."""
        # the task now holds the core just written: unless others wrote meanwhile (then its
        # version is further on, and only what they changed decodes), it is the record
        # written, one version on
        written = Decoded(
            record=msgspec.structs.replace(updated, version=seen.record.version + 1),
            core_version=seen.core_version + 1,
            created_at_ms=seen.created_at_ms,
            format=FORMAT,
            rewritable=True,
            data=write.data,
            variables_data=seen.variables_data,
            updated_at_ms=write.now_ms,
        )
        # a queued task's write may also move its job part: that part is decoded from what
        # the task holds, the core taken from what was written
        job = seen.record.job
        return self._owned(write.key, result.current, written, whole=job is None).record


def core_write(
    key: TaskKey, seen: Decoded, updated: TaskRecord, now: int, fence: Fence | None
) -> CoreWrite:
    """The compare-and-set that turns the task ``seen`` into ``updated``."""
    job = seen.record.job
    return CoreWrite(
        key=key,
        expected_core_version=seen.core_version,
        format=FORMAT,
        data=encode_core(updated, seen.created_at_ms),
        created_at_ms=seen.created_at_ms,
        terminal=updated.task.status.is_terminal,
        now_ms=now,
        fence=fence,
        queue=None if job is None else job.queue,
        status=updated.task.status.value,
    )


def lost_lease(key: TaskKey, fence: Fence, reason: str) -> None:
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
        lost_lease(key, fence, "missing")
        return
    status = record.task.status
    if fence.token > job.token:
        lost_lease(key, fence, "forged")
    if status.is_terminal:
        lost_lease(key, fence, status.value)
    if fence.token < job.token:
        lost_lease(key, fence, "reclaimed")
    if job.state != "leased":
        lost_lease(key, fence, "expired")


def submitted(record: TaskRecord, job: NewJob, now: int) -> TaskRecord:
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
            priority=job.priority,
            resubmitted_from=job.resubmitted_from,
            group=job.group,
            scheduled_for=(
                None if job.scheduled_for_ms is None else datetime_from_ms(job.scheduled_for_ms)
            ),
        ),
    )


def same_record(known: Decoded, stored: VersionedRecord) -> bool:
    """Whether a remembered record is the one ``stored`` decodes to.

    Every write moves the task version on, so equal versions (and format) mean
    equal contents.
    """
    return known.source is stored or (
        known.record.version == stored.version
        and known.core_version == stored.core_version
        and known.format == stored.format
    )
