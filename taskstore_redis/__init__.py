"""taskstore_redis: a Redis-native, distributed store for long-running tasks.

This module is the blocking API; ``taskstore_redis.asyncio`` has the same names
with async methods. Types, settings and errors are shared by both.
"""

from __future__ import annotations

import typing as _typing

from ._shared import *  # noqa: F403 - the shared names are listed in _shared.__all__
from ._shared import __all__ as _shared_names
from ._shared import missing_name as _missing_name
from ._sync._lease import Lease
from ._sync._memory import InMemoryBackend
from ._sync._protocols import TaskStore
from ._sync._redis import RedisBackend
from ._sync._scheduler import run_scheduler
from ._sync._store import GenericTaskStore
from ._sync._worker import run_worker
from ._worker_loop import WorkerStats

__version__ = "0.1.0"

__all__ = [
    # sync stores and backends
    "GenericTaskStore",
    "InMemoryBackend",
    "Lease",
    "RedisBackend",
    "TaskStore",
    # the worker loop over a queue
    "WorkerStats",
    "run_worker",
    # the scheduler of schedules
    "run_scheduler",
    *_shared_names,
]

if not _typing.TYPE_CHECKING:  # type checkers report a missing name themselves

    def __getattr__(name: str) -> object:
        raise _missing_name(__name__, name)
