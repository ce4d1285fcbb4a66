"""Build a backend from a URL: the one module that knows the concrete backends.

The store (``_store.py``) imports no concrete backend: ``GenericTaskStore.from_url``
calls :func:`backend_from_url` here, so the domain rules stay apart from any storage and
a new backend is named in one place.
"""

from __future__ import annotations

from typing import Any

from ._redis import RedisBackend


def backend_from_url(url: str, **options: Any) -> RedisBackend:
    """Return the backend for ``url``: Redis or Redis Cluster, see ``RedisBackend.from_url``."""
    return RedisBackend.from_url(url, **options)
