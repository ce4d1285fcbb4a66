"""The async API of taskstore_redis: the same names as ``taskstore_redis``, awaitable.

Types, settings and errors are the same objects as in ``taskstore_redis``.
"""

from __future__ import annotations

import typing as _typing

from .._async._lease import Lease
from .._async._memory import InMemoryBackend
from .._async._protocols import TaskStore
from .._async._redis import RedisBackend
from .._async._scheduler import run_scheduler
from .._async._store import GenericTaskStore
from .._async._worker import run_worker
from .._shared import *  # noqa: F403 - the shared names are listed in _shared.__all__
from .._shared import __all__ as _shared_names
from .._shared import missing_name as _missing_name
from .._worker_loop import WorkerStats

__all__ = [
    # async stores and backends
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
