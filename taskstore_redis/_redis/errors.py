"""Translation of redis-py's exceptions into the library's errors, at the boundary."""

from __future__ import annotations

from types import TracebackType

import redis.exceptions

from .._core.errors import StoreUnavailable

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
"""Errors after which the connection is dropped; a write may or may not have landed."""


class map_redis_errors:
    """Re-raise any redis-py or OS error as StoreUnavailable, with the cause chained.

    ``NoScriptError`` passes through: the caller loads the scripts and runs them
    again. A class rather than a generator-based context manager: it is on every
    call's path.
    """

    __slots__ = ("operation", "write")

    def __init__(self, operation: str, *, write: bool) -> None:
        """Name the operation for the message; ``write`` marks unknown outcomes."""
        self.operation = operation
        self.write = write

    def __enter__(self) -> None:
        """Nothing to set up."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Translate the exception, if any."""
        if exc is None or isinstance(exc, redis.exceptions.NoScriptError):
            return
        if isinstance(exc, TRANSIENT):
            unknown = " (the write may or may not have been applied)" if self.write else ""
            raise StoreUnavailable(
                f"Redis unavailable during {self.operation}{unknown}: {exc}",
                outcome_unknown=self.write,
            ) from exc
        if isinstance(exc, redis.exceptions.RedisError):
            raise StoreUnavailable(f"Redis refused {self.operation}: {exc}") from exc
