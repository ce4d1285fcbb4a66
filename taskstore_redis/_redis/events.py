"""What the Redis backend tells an operator, on the ``taskstore_redis.redis`` logger.

One warning when calls start failing for a lost connection, one line when they
succeed again (with how many failed in between), one line per script reload
after ``NOSCRIPT``, and one warning per write whose outcome is unknown. Nothing
for a call that succeeds at once.
"""

from __future__ import annotations

import logging

from .._core.errors import StoreUnavailable
from .._core.log import REDIS


class ConnectionEvents:
    """The connection state of one backend, as far as logging needs it."""

    __slots__ = ("failures",)

    def __init__(self) -> None:
        """Start as connected: nothing has failed."""
        self.failures = 0
        """Calls that failed for a lost connection since the last success."""

    def lost(self, error: StoreUnavailable, *, retrying: bool) -> None:
        """A call failed for a lost or refused connection; the first of a run is a warning."""
        self.failures += 1
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        then = "sending it again" if retrying else "the call fails"
        REDIS.log(level, "%s; %s", error, then)

    def recovered(self) -> None:
        """A call succeeded after failures (call only when ``failures``)."""
        failed, self.failures = self.failures, 0
        REDIS.info("Redis answers again, after %d failed attempts", failed)

    @staticmethod
    def scripts_reloaded(operation: str) -> None:
        """The server did not know a script (restart, failover, SCRIPT FLUSH): loaded again."""
        REDIS.info("NOSCRIPT during %s: the server lost the scripts; loaded them again", operation)

    @staticmethod
    def outcome_unknown(error: StoreUnavailable) -> None:
        """A write is reported to the caller as possibly applied, possibly not."""
        REDIS.warning("outcome unknown: %s", error)
