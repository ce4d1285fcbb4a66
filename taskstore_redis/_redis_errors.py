"""Translation of redis-py's exceptions into the library's errors, at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

from ._errors import StoreUnavailable

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
"""Errors after which the connection is dropped; a write may or may not have landed."""


@contextmanager
def map_redis_errors(operation: str, *, write: bool) -> Iterator[None]:
    """Re-raise any redis-py or OS error as StoreUnavailable, with the cause chained."""
    try:
        yield
    except TRANSIENT as exc:
        unknown = " (the write may or may not have been applied)" if write else ""
        raise StoreUnavailable(
            f"Redis unavailable during {operation}{unknown}: {exc}", outcome_unknown=write
        ) from exc
    except redis.exceptions.NoScriptError:
        raise  # the caller loads the scripts and runs them again
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable(f"Redis refused {operation}: {exc}") from exc
