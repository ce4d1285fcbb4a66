"""Translation of redis-py's exceptions into the library's errors, at the boundary."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any

import redis.exceptions

from .._core.errors import StoreUnavailable, TaskStoreError
from .scripts import locate_lines

_NOT_RUN = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.SlotNotCoveredError,
)
"""Errors that say the command was not run: a cluster in the middle of a failover
(``CLUSTERDOWN``, ``TRYAGAIN``), a server still loading its data, or no node known
for the slot (raised before anything is sent)."""

TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.RedisClusterException,
    OSError,
    *_NOT_RUN,
)
"""Errors that pass (the call may be sent again); after most, a write may or may not have landed.

redis-py's cluster client raises ``RedisClusterException`` (not a ``RedisError``) when
no node of the cluster answers, as on its first use while the cluster is down. The
clients are made without redis-py's own retries, so the error of a call is the error
of its one attempt, and what it says of the write (sent or not) holds.
"""

_OURS = (TaskStoreError, redis.exceptions.RedisError)
"""Errors that are already what they say: the store's own, and redis-py's (mapped above)."""

_NOT_CONNECTED = (ConnectionRefusedError, FileNotFoundError, socket.gaierror)
"""What redis-py's connect failed with when no connection was made: nothing was sent."""


def client_fault(exc: BaseException | None) -> bool:
    """Whether ``exc`` is no redis-py error but was raised inside redis-py's own code.

    A client that fails in the middle of a call (a connection torn down under a
    concurrent command during a failover, say) leaves the command's fate unknown,
    as a lost connection does; an error raised in this library's code is a bug and
    is not taken for one.
    """
    if exc is None or not isinstance(exc, Exception) or isinstance(exc, _OURS):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return isinstance(module, str) and (module == "redis" or module.startswith("redis."))


def may_pass(exc: BaseException | None) -> bool:
    """Whether ``exc`` (a StoreUnavailable's cause) may pass: the call may be sent again."""
    return isinstance(exc, TRANSIENT) or client_fault(exc)


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` says the command never ran: it came from connecting, or was refused unrun.

    redis-py raises its ``ConnectionError`` for a failed connect from within the
    handler of the socket error (refused, no such unix socket, unknown host).
    """
    if isinstance(exc, _NOT_RUN):
        return True
    return isinstance(exc, redis.exceptions.ConnectionError) and isinstance(
        exc.__context__, _NOT_CONNECTED
    )


def script_sha(command: tuple[Any, ...]) -> str | None:
    """The SHA of the script a command runs (``EVALSHA sha ...``, str or bytes), else None."""
    if len(command) < 2 or command[0] != "EVALSHA":
        return None
    sha = command[1]
    return sha.decode() if isinstance(sha, bytes) else str(sha)


class map_redis_errors:
    """Re-raise any redis-py or OS error as StoreUnavailable, with the cause chained.

    ``NoScriptError`` passes through: the caller loads the scripts and runs them
    again. A class rather than a generator-based context manager: it is on every
    call's path.
    """

    __slots__ = ("operation", "sha", "write")

    def __init__(self, operation: str, *, write: bool, sha: str | None = None) -> None:
        """Name the operation for the message; ``write`` marks unknown outcomes.

        ``sha``: the script the call runs, whose file and line a script error names
        (set it before raising when one context covers several scripts).
        """
        self.operation = operation
        self.write = write
        self.sha = sha

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
        if isinstance(exc, TRANSIENT) or client_fault(exc):
            unknown = self.write and not never_sent(exc)
            if unknown:
                said = " (the write may or may not have been applied)"
            else:
                said = " (not sent: nothing was written)" if self.write else ""
            raise StoreUnavailable(
                f"Redis unavailable during {self.operation}{said}: {exc}",
                outcome_unknown=unknown,
            ) from exc
        if isinstance(exc, redis.exceptions.RedisError):
            # a script's error names the file and line it came from (see lua/includes/)
            refused = locate_lines(str(exc), self.sha)
            raise StoreUnavailable(f"Redis refused {self.operation}: {refused}") from exc
