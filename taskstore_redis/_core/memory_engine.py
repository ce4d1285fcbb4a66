"""The in-memory storage engine shared by the async and the sync InMemoryBackend.

A real backend, not a mock: versioned records whose variables are kept apart
(so merges of distinct keys never conflict), an owner index in
(created_at_ms, task_id) order, a quota of unexpired non-terminal tasks and
purge times, all behind one lock so that threads and coroutines of one process
can share it. The same semantics as the Redis scripts.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .backend_types import (
    BackendPage,
    CasResult,
    CoreWrite,
    Created,
    CreateOutcome,
    DeleteOutcome,
    ListPosition,
    MergeOutcome,
    MergeResult,
    NewTask,
    StoredJob,
    TaskKey,
    TaskRemoval,
    VariableMerge,
    VersionedRecord,
)
from .clock import now_ms
from .model import format_major_of, format_not_newer, variables_size

_IndexEntry = tuple[int, str]


@dataclass(slots=True)
class _Entry:
    version: int
    core_version: int
    data: bytes
    format: str
    created_at_ms: int
    expires_at_ms: int | None
    purge_at_ms: int | None
    updated_at_ms: int | None = None
    variables: dict[bytes, bytes] = field(default_factory=dict)
    variables_total: int = 0
    """Sum of the lengths of the variables' ``key:value`` texts."""
    terminal: bool = False
    snapshot: VersionedRecord | None = None
    """What ``stored`` returned last, until the next write (set it back to None)."""
    params: bytes | None = None
    job: StoredJob | None = None

    def stored(self, task_id: str = "") -> VersionedRecord:
        snapshot = self.snapshot
        if snapshot is not None and snapshot.task_id == task_id:
            return snapshot
        variables = self.variables
        self.snapshot = snapshot = VersionedRecord(
            version=self.version,
            core_version=self.core_version,
            data=self.data,
            variables=(
                b"{" + b",".join([k + b":" + v for k, v in variables.items()]) + b"}"
                if variables
                else b"{}"
            ),
            updated_at_ms=self.updated_at_ms,
            format=self.format,
            task_id=task_id,
            params=self.params,
            job=self.job,
        )
        return snapshot


class MemoryStorage:
    """Versioned task records in a dict, indexed per owner; thread-safe."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.RLock()  # re-entrant: the queue engine extends the writes
        self._entries: dict[TaskKey, _Entry] = {}
        self._index: dict[str, list[_IndexEntry]] = {}
        self.on_change: Callable[[TaskKey], None] = _ignore
        """Called, under the lock, with the key of every record written or removed."""

    def get(self, key: TaskKey) -> VersionedRecord | None:
        """Return the record at ``key`` unless it is missing or past its purge time."""
        with self._lock:
            entry = self._live_entry(key, now_ms())
            return None if entry is None else entry.stored()

    def create(self, task: NewTask) -> Created:
        """Write version 1 of a new record, unless it exists or the owner is at quota."""
        key = task.key
        with self._lock:
            if self._live_entry(key, task.now_ms) is not None:
                return CreateOutcome.ALREADY_EXISTS
            if task.max_live is not None and (
                self._active_count(key.owner_id, task.now_ms) >= task.max_live
            ):
                return CreateOutcome.QUOTA_EXCEEDED
            self._entries[key] = _Entry(
                version=1,
                core_version=1,
                data=bytes(task.data),
                format=task.format,
                created_at_ms=task.created_at_ms,
                expires_at_ms=task.expires_at_ms,
                purge_at_ms=task.purge_at_ms,
            )
            bisect.insort(
                self._index.setdefault(key.owner_id, []), (task.created_at_ms, key.task_id)
            )
            self.on_change(key)
            return CreateOutcome.CREATED

    def compare_and_set(self, write: CoreWrite) -> CasResult:
        """Replace the core record if its core version matches; else report the current one."""
        with self._lock:
            entry = self._live_entry(write.key, now_ms())
            if entry is None:
                return CasResult(applied=False, current=None)
            if entry.core_version != write.expected_core_version or (
                entry.format != write.format and not format_not_newer(entry.format, write.format)
            ):
                return CasResult(applied=False, current=entry.stored())
            entry.version += 1
            entry.core_version += 1
            entry.data = bytes(write.data)
            entry.updated_at_ms = write.now_ms
            entry.terminal = entry.terminal or write.terminal
            entry.snapshot = None
            self.on_change(write.key)
            return CasResult(applied=True, current=entry.stored())

    def merge_variables(self, merge: VariableMerge) -> MergeResult:
        """Write only the variables named; refuse, writing nothing, as ``VariableMerge`` says."""
        with self._lock:
            entry = self._live_entry(merge.key, now_ms())
            if entry is None:
                return MergeResult(outcome=MergeOutcome.NOT_FOUND)
            if format_major_of(entry.format) != str(merge.format_major):
                return MergeResult(outcome=MergeOutcome.OTHER_FORMAT, format=entry.format)
            if entry.expires_at_ms is not None and entry.expires_at_ms <= merge.now_ms:
                return MergeResult(outcome=MergeOutcome.EXPIRED)
            variables = entry.variables
            members = len(variables)
            total = entry.variables_total
            for name in merge.deletes:
                old = variables.get(name)
                if old is not None:
                    members -= 1
                    total -= len(name) + 1 + len(old)
            for name, value in merge.sets:
                old = variables.get(name)
                if old is not None:
                    members -= 1
                    total -= len(name) + 1 + len(old)
                members += 1
                total += len(name) + 1 + len(value)
            size = variables_size(members, total)
            if size > merge.max_bytes:
                return MergeResult(outcome=MergeOutcome.TOO_LARGE, size=size)
            for name in merge.deletes:
                variables.pop(name, None)
            for name, value in merge.sets:
                variables[bytes(name)] = bytes(value)
            entry.variables_total = total
            entry.version += 1
            entry.updated_at_ms = merge.now_ms
            entry.snapshot = None
            self.on_change(merge.key)
            return MergeResult(outcome=MergeOutcome.APPLIED, current=entry.stored())

    def list_page(self, owner_id: str, after: ListPosition | None, limit: int) -> BackendPage:
        """Return up to ``limit`` records older than ``after``, newest first."""
        with self._lock:
            now = now_ms()
            index = self._index.get(owner_id, [])
            end = (
                len(index)
                if after is None
                else bisect.bisect_left(index, (after.created_at_ms, after.task_id))
            )
            records: list[VersionedRecord] = []
            entries = self._entries
            position = end
            while position > 0 and len(records) < limit:
                position -= 1
                task_id = index[position][1]
                key = TaskKey(owner_id, task_id)
                entry = entries.get(key)
                if entry is None:
                    continue
                purge_at_ms = entry.purge_at_ms
                if purge_at_ms is not None and purge_at_ms <= now:
                    self._remove(key)
                    continue
                # a purged entry was removed from the index: positions below are unchanged
                snapshot = entry.snapshot
                if snapshot is not None and snapshot.task_id == task_id:
                    records.append(snapshot)
                else:
                    records.append(entry.stored(task_id))
            more = position > 0 and len(records) == limit
            next_position = None
            if more:
                created_at_ms, task_id = index[position]
                next_position = ListPosition(created_at_ms, task_id)
            return BackendPage(records, next_position)

    def purge_expired(self, now_ms: int) -> int:
        """Delete every record whose TTL ran out at or before ``now_ms``."""
        with self._lock:
            expired = [
                key
                for key, entry in self._entries.items()
                if entry.expires_at_ms is not None and entry.expires_at_ms <= now_ms
            ]
            purged = 0
            for key in expired:
                # a record past its purge time was already gone: drop it, do not count it
                if self._live_entry(key, now_ms) is not None:
                    self._remove(key)
                    purged += 1
            return purged

    def delete(self, removal: TaskRemoval) -> DeleteOutcome:
        """Remove the record and its index entries if its core is still ``removal.data``."""
        key = removal.key
        with self._lock:
            entry = self._live_entry(key, now_ms())
            if entry is None:
                return DeleteOutcome.NOT_FOUND
            if entry.data != removal.data:
                return DeleteOutcome.CHANGED
            self._remove(key)  # tells the waiters
            return DeleteOutcome.DELETED

    def _live_entry(self, key: TaskKey, now: int) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.purge_at_ms is not None and entry.purge_at_ms <= now:
            self._remove(key)
            return None
        return entry

    def in_progress(self, owner_id: str, now: int) -> int:
        """The owner's unexpired, non-terminal tasks at ``now``: what the quota counts."""
        with self._lock:
            return self._active_count(owner_id, now)

    def _active_count(self, owner_id: str, now: int) -> int:
        """The owner's unexpired, non-terminal tasks."""
        count = 0
        for _, task_id in list(self._index.get(owner_id, [])):
            entry = self._live_entry(TaskKey(owner_id, task_id), now)
            if (
                entry is not None
                and not entry.terminal
                and (entry.expires_at_ms is None or entry.expires_at_ms > now)
            ):
                count += 1
        return count

    def _remove(self, key: TaskKey) -> None:
        entry = self._entries.pop(key)
        index = self._index[key.owner_id]
        del index[bisect.bisect_left(index, (entry.created_at_ms, key.task_id))]
        if not index:
            del self._index[key.owner_id]
        self.on_change(key)


def _ignore(key: TaskKey) -> None:
    """The default ``on_change``: nobody listens."""
