"""InMemoryBackend: the embedded default backend, for one process."""

from __future__ import annotations

from .._core.backend_types import (
    BackendPage,
    CasResult,
    CreateOutcome,
    ListPosition,
    TaskKey,
    VersionedRecord,
)
from .._core.fanout import Fanout
from .._core.memory_engine import MemoryStorage
from ._watch import FanoutWatch


class InMemoryBackend:
    """A StorageBackend that keeps records in this process's memory.

    Safe to share between the threads and coroutines of one process; each
    process that builds one has its own, separate data.
    """

    def __init__(self) -> None:
        """Start with no records."""
        self._storage = MemoryStorage()
        self._fanout = Fanout()
        self._storage.on_change = self._fanout.notify

    async def get(self, key: TaskKey) -> VersionedRecord | None:
        """Return the record at ``key``, or None."""
        return self._storage.get(key)

    async def create(
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
        """Write a new record with version 1, within the owner's quota."""
        return self._storage.create(
            key,
            data,
            created_at_ms=created_at_ms,
            expires_at_ms=expires_at_ms,
            purge_at_ms=purge_at_ms,
            max_live=max_live,
            now_ms=now_ms,
        )

    async def compare_and_set(self, key: TaskKey, expected_version: int, data: bytes) -> CasResult:
        """Replace the record's bytes if its version is ``expected_version``."""
        return self._storage.compare_and_set(key, expected_version, data)

    async def list_page(self, owner_id: str, after: ListPosition | None, limit: int) -> BackendPage:
        """Return up to ``limit`` of the owner's records, newest first, after ``after``."""
        return self._storage.list_page(owner_id, after, limit)

    async def purge_expired(self, now_ms: int) -> int:
        """Delete every record whose TTL ran out at or before ``now_ms``."""
        return self._storage.purge_expired(now_ms)

    def watch(self, key: TaskKey) -> FanoutWatch:
        """Watch one record's changes: every write or removal of ``key`` wakes its waiters."""
        return FanoutWatch(self._fanout, key)

    def watch_registrations(self) -> int:
        """How many waiters are registered now (for tests and diagnostics)."""
        return self._fanout.registrations()

    async def aclose(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""
