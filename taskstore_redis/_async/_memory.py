"""InMemoryBackend: the embedded default backend, for one process."""

from __future__ import annotations

from .._core.backend_types import (
    BackendPage,
    CasResult,
    CoreWrite,
    CreateOutcome,
    DeleteOutcome,
    ListPosition,
    MergeResult,
    NewTask,
    TaskKey,
    TaskRemoval,
    VariableMerge,
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

    async def create(self, task: NewTask) -> CreateOutcome:
        """Write a new record with version 1, within the owner's quota."""
        return self._storage.create(task)

    async def compare_and_set(self, write: CoreWrite) -> CasResult:
        """Replace the core record if its core version is the expected one."""
        return self._storage.compare_and_set(write)

    async def merge_variables(self, merge: VariableMerge) -> MergeResult:
        """Set and delete the variables named, with no version check."""
        return self._storage.merge_variables(merge)

    async def list_page(self, owner_id: str, after: ListPosition | None, limit: int) -> BackendPage:
        """Return up to ``limit`` of the owner's records, newest first, after ``after``."""
        return self._storage.list_page(owner_id, after, limit)

    async def purge_expired(self, now_ms: int) -> int:
        """Delete every record whose TTL ran out at or before ``now_ms``."""
        return self._storage.purge_expired(now_ms)

    async def delete(self, removal: TaskRemoval) -> DeleteOutcome:
        """Remove the record and its index entries if its core is still ``removal.data``."""
        return self._storage.delete(removal)

    def watch(self, key: TaskKey) -> FanoutWatch:
        """Watch one record's changes: every write or removal of ``key`` wakes its waiters."""
        return FanoutWatch(self._fanout, key)

    def watch_registrations(self) -> int:
        """How many waiters are registered now (for tests and diagnostics)."""
        return self._fanout.registrations()

    async def aclose(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""
