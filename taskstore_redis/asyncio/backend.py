"""The async storage backend's interface: its protocols and the values it takes and returns.

The awaitable twin of ``taskstore_redis.backend``: the same names, with async
protocols. The value types are the same objects in both.
"""

from __future__ import annotations

from .._async._protocols import QueueBackend, QueueWatch, StorageBackend, TaskWatch
from .._core.backend_types import *  # noqa: F403 - the value types are listed in its __all__
from .._core.backend_types import __all__ as _value_types

__all__ = [
    # the async protocols
    "QueueBackend",
    "QueueWatch",
    "StorageBackend",
    "TaskWatch",
    # the values a backend takes and returns
    *_value_types,
]
