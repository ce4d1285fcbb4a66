"""The store's memory of the last record it saw for each task, in this process."""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable

from .backend_types import TaskKey
from .model import Decoded

MAX_REMEMBERED_BYTES = 65_536
"""Records whose stored JSON is larger than this are not remembered."""


class RecordCache:
    """A bounded, thread-safe LRU of decoded task records keyed by (owner, task).

    A remembered record lets a mutation send its compare-and-set at once; if the
    record is stale the compare-and-set fails with the current record, so the
    memory costs a round trip at worst and never a wrong answer.
    """

    def __init__(self, size: int) -> None:
        """Remember at most ``size`` records; 0 remembers nothing."""
        self._size = size
        self._records: OrderedDict[TaskKey, Decoded] = OrderedDict()
        self._lock = threading.Lock()
        _caches.add(self)

    def _after_fork(self) -> None:
        """In a forked child: a new lock (the inherited one may be held forever), no records."""
        self._lock = threading.Lock()
        self._records = OrderedDict()

    def get(self, key: TaskKey) -> Decoded | None:
        """Return the remembered record, if any.

        Takes no lock: a dict read and a move to the end are each atomic, and a
        record dropped meanwhile by another thread is simply not moved.
        """
        record = self._records.get(key)
        if record is not None:
            try:  # noqa: SIM105 - cheaper than contextlib.suppress on this hot path
                self._records.move_to_end(key)
            except KeyError:
                pass  # dropped by another thread since: still a valid answer
        return record

    def put(self, key: TaskKey, record: Decoded, stored_bytes: int) -> None:
        """Remember ``record`` unless a newer version is already remembered."""
        if not self._size:
            return
        with self._lock:
            records = self._records
            if stored_bytes > MAX_REMEMBERED_BYTES:
                records.pop(key, None)
                return
            known = records.get(key)
            if known is not None and known.record.version > record.record.version:
                return
            records[key] = record
            records.move_to_end(key)
            if len(records) > self._size:
                records.popitem(last=False)

    def put_many(self, entries: Iterable[tuple[TaskKey, Decoded, int]]) -> None:
        """Remember several records (key, record, size of its stored bytes) at once."""
        if not self._size:
            return
        with self._lock:
            records = self._records
            for key, record, stored_bytes in entries:
                if stored_bytes > MAX_REMEMBERED_BYTES:
                    records.pop(key, None)
                    continue
                known = records.get(key)
                if known is not None and known.record.version > record.record.version:
                    continue
                records[key] = record
                records.move_to_end(key)
            while len(records) > self._size:
                records.popitem(last=False)

    def forget(self, key: TaskKey) -> None:
        """Drop what is remembered of ``key``."""
        with self._lock:
            self._records.pop(key, None)


_caches: weakref.WeakSet[RecordCache] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for cache in list(_caches):
        cache._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
