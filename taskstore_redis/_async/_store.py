"""GenericTaskStore: all domain logic over any StorageBackend."""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Any

import anyio
import msgspec

from .._core.backend_types import (
    CoreWrite,
    CreateOutcome,
    DeleteOutcome,
    MergeOutcome,
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
    JSONValue,
    TaskPage,
    TaskRecord,
    decode_record,
    encode_core,
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
    check_id,
    check_owner,
    check_status,
    check_status_message,
    check_wait,
    clean_json_value,
    clean_variables,
    resolve_limit,
    resolve_ttl,
)
from ._protocols import StorageBackend

_Change = Callable[[TaskRecord, int], TaskRecord]
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
                )
            )
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
        target = check_status(status)
        message = check_status_message(status_message, self._config)
        return await self._mutate(
            task_id, owner_id, lambda record, now: change_status(record, target, message, now)
        )

    async def set_variables(
        self, task_id: str, owner_id: str, variables: dict[str, Any]
    ) -> TaskRecord:
        """Merge ``variables`` into the task's; a None value deletes that key.

        Raises:
            InvalidArgument: a value is not plain JSON within the depth and string limits.
            VariableSizeExceeded: the merged variables would exceed the size limit.

        """
        incoming = clean_variables(variables, self._config)
        key = self._key(task_id, owner_id)
        sets, deletes = encode_variable_changes(incoming)
        merge = VariableMerge(
            key=key,
            format_major=FORMAT_MAJOR,
            sets=sets,
            deletes=deletes,
            max_bytes=self._config.max_variable_size_bytes,
            now_ms=now_ms(),
        )
        result = await self._backend.merge_variables(merge)
        outcome = result.outcome
        if outcome is MergeOutcome.APPLIED:
            return self._owned(key, result.current).record
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
        tasks: builtins.list[TaskRecord] = []
        seen: builtins.list[tuple[TaskKey, Decoded, int]] = []
        remembered = self._cache.get
        for stored in page.records:
            task_id = stored.task_id
            key = TaskKey(owner, task_id)
            known = remembered(key)
            if known is not None and (known.source is stored or _same(known, stored)):
                tasks.append(known.record)
                continue
            decoded = decode_record(stored, owner, task_id, known)
            tasks.append(decoded.record)
            seen.append((key, decoded, len(stored.data) + len(stored.variables)))
        if seen:
            self._cache.put_many(seen)
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
        """Purge every expired task now, without waiting for its retention; return the count."""
        return await self._backend.purge_expired(now_ms())

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
        deadline = None if timeout is None else monotonic() + timeout
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
        message = check_status_message(status_message, self._config)
        return await self._mutate(
            task_id, owner_id, lambda record, now: change_message(record, message, now)
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
            return known  # what this process decoded at this very version: no decoding again
        decoded = decode_record(stored, key.owner_id, key.task_id, known)
        self._cache.put(key, decoded, len(stored.data) + len(stored.variables))
        return decoded

    async def _read(self, key: TaskKey) -> Decoded:
        return self._owned(key, await self._backend.get(key))

    async def _mutate(self, task_id: str, owner_id: str, change: _Change) -> TaskRecord:
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
            seen = await self._read(key)
        conflicts = 0
        deadline: int | None = None
        while True:
            now = now_ms()
            try:
                updated = change(seen.record, now)
            except TaskStoreError:
                if current:
                    raise
                seen, current = await self._read(key), True
                updated = change(seen.record, now)
            if not seen.rewritable:
                if not current:
                    seen, current = await self._read(key), True
                    continue
                raise UnsupportedFormat(key.task_id, seen.format, FORMAT)
            data = encode_core(updated, seen.created_at_ms)
            result = await self._backend.compare_and_set(
                CoreWrite(
                    key=key,
                    expected_core_version=seen.core_version,
                    format=FORMAT,
                    data=data,
                    created_at_ms=seen.created_at_ms,
                    terminal=updated.task.status.is_terminal,
                    now_ms=now,
                )
            )
            if result.applied:
                # the task now holds the core just written: only what others changed decodes
                written = Decoded(
                    updated,
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
