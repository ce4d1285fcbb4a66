"""The in-memory storage engine shared by the async and the sync InMemoryBackend.

A real backend, not a mock: versioned records, an owner index in
(created_at_ms, task_id) order, a live-task quota and purge times, all behind
one lock so that threads and coroutines of one process can share it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .backend_types import (
    BackendPage,
    CasResult,
    CreateOutcome,
    ListPosition,
    TaskKey,
    VersionedRecord,
)
from .clock import now_ms

_IndexEntry = tuple[int, str]


@dataclass(slots=True)
class _Entry:
    version: int
    data: bytes
    created_at_ms: int
    expires_at_ms: int | None
    purge_at_ms: int | None


class MemoryStorage:
    """Versioned task records in a dict, indexed per owner; thread-safe."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._entries: dict[TaskKey, _Entry] = {}
        self._index: dict[str, list[_IndexEntry]] = {}
        self.on_change: Callable[[TaskKey], None] = _ignore
        """Called, under the lock, with the key of every record written or removed."""

    def get(self, key: TaskKey) -> VersionedRecord | None:
        """Return the record at ``key`` unless it is missing or past its purge time."""
        with self._lock:
            entry = self._live_entry(key, now_ms())
            return None if entry is None else VersionedRecord(entry.version, entry.data)

    def create(
        self,
        key: TaskKey,
        data: bytes,
        *,
        created_at_ms: int,
        expires_at_ms: int | None,
        purge_at_ms: int | None,
        max_live: int | None,
        now_ms: int,
    ) -> CreateOutcome:
        """Write version 1 of a new record, unless it exists or the owner is at quota."""
        with self._lock:
            if self._live_entry(key, now_ms) is not None:
                return CreateOutcome.ALREADY_EXISTS
            if max_live is not None and self._live_count(key.owner_id, now_ms) >= max_live:
                return CreateOutcome.QUOTA_EXCEEDED
            self._entries[key] = _Entry(1, bytes(data), created_at_ms, expires_at_ms, purge_at_ms)
            bisect.insort(self._index.setdefault(key.owner_id, []), (created_at_ms, key.task_id))
            self.on_change(key)
            return CreateOutcome.CREATED

    def compare_and_set(self, key: TaskKey, expected_version: int, data: bytes) -> CasResult:
        """Replace the bytes if the version matches; else report the current record."""
        with self._lock:
            entry = self._live_entry(key, now_ms())
            if entry is None:
                return CasResult(False, 0, None)
            if entry.version != expected_version:
                return CasResult(False, entry.version, VersionedRecord(entry.version, entry.data))
            entry.version += 1
            entry.data = bytes(data)
            self.on_change(key)
            return CasResult(True, entry.version)

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
            position = end
            while position > 0 and len(records) < limit:
                position -= 1
                created_at_ms, task_id = index[position]
                entry = self._live_entry(TaskKey(owner_id, task_id), now)
                if entry is not None:
                    records.append(VersionedRecord(entry.version, entry.data))
                # a purged entry was removed from the index: positions below are unchanged
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

    def _live_entry(self, key: TaskKey, now: int) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.purge_at_ms is not None and entry.purge_at_ms <= now:
            self._remove(key)
            return None
        return entry

    def _live_count(self, owner_id: str, now: int) -> int:
        count = 0
        for _, task_id in list(self._index.get(owner_id, [])):
            entry = self._live_entry(TaskKey(owner_id, task_id), now)
            if entry is not None and (entry.expires_at_ms is None or entry.expires_at_ms > now):
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
