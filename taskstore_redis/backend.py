"""The storage backend's interface: its protocols and the values it takes and returns.

An application picks a backend (``RedisBackend`` or ``InMemoryBackend``, both in
``taskstore_redis``) and hands it to the store; it never calls the backend itself.
This module is for writing or testing a backend: ``StorageBackend`` is a versioned
key-value store of task records with no domain rules, ``QueueBackend`` adds the work
queues, and ``TaskWatch`` and ``QueueWatch`` are what their ``watch`` and
``queue_watch`` return. The protocols here are the blocking ones
(``taskstore_redis.asyncio.backend`` has the awaitable ones); the value types are the
same objects in both.
"""

from __future__ import annotations

from ._core.backend_types import *  # noqa: F403 - the value types are listed in its __all__
from ._core.backend_types import __all__ as _value_types
from ._sync._protocols import QueueBackend, QueueWatch, StorageBackend, TaskWatch

__all__ = [
    # the blocking protocols
    "QueueBackend",
    "QueueWatch",
    "StorageBackend",
    "TaskWatch",
    # the values a backend takes and returns
    *_value_types,
]
