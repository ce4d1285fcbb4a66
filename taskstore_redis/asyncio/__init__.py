"""The async API of taskstore_redis: the same names as ``taskstore_redis``, awaitable.

Types, settings and errors are the same objects as in ``taskstore_redis``.
"""

from __future__ import annotations

from .._async._lease import Lease
from .._async._memory import InMemoryBackend
from .._async._protocols import QueueBackend, QueueWatch, StorageBackend, TaskStore, TaskWatch
from .._async._redis import RedisBackend
from .._async._store import GenericTaskStore
from .._async._worker import run_worker
from .._shared import *  # noqa: F403 - the shared names are listed in _shared.__all__
from .._shared import __all__ as _shared_names
from .._worker_loop import WorkerStats

__all__ = [
    # async stores and backends
    "GenericTaskStore",
    "InMemoryBackend",
    "Lease",
    "QueueBackend",
    "QueueWatch",
    "RedisBackend",
    "StorageBackend",
    "TaskStore",
    "TaskWatch",
    # the worker loop over a queue
    "WorkerStats",
    "run_worker",
    *_shared_names,
]
