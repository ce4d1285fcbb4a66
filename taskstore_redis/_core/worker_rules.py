"""The decisions of ``run_worker`` that need no I/O: its settings, retry pauses, failure texts."""

from __future__ import annotations

import math
import random

import msgspec

from .config import StoreConfig
from .errors import InvalidArgument
from .validation import check_queue, check_worker_id

MAX_ATTEMPTS = 1_000_000
"""The most attempts a worker may allow (as for ``submit``)."""

DELAY_LIMIT_MS = 86_400_000
"""The longest retry pause when the store has no ``max_ttl_ms`` (as for ``release``)."""

FAILED_RESULT_KEY = "error"
"""A task the worker failed has the result ``{"error": <message>, "type": <exception type>}``."""


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What ``run_worker`` was asked to do, checked (see ``run_worker`` for each field).

    The one place of the settings' defaults: ``run_worker`` and the ``worker`` command
    take theirs from ``DEFAULT_SETTINGS``.
    """

    queue: str = "default"
    concurrency: int = 8
    lease_ms: int | None = None
    max_attempts: int | None = None
    retry_base_ms: int = 1_000
    retry_max_ms: int = 60_000
    grace_s: float = 30.0
    sweep_every_s: float = 10.0
    idle_wait_s: float = 1.0
    worker_id: str | None = None
    schedules: bool = True

    def __post_init__(self) -> None:
        """Raise InvalidArgument for a setting that could never work, whatever the store."""
        if not isinstance(self.queue, str) or not self.queue:
            raise InvalidArgument(f"queue must be a non-empty string, got {self.queue!r}")
        check_queue(self.queue)
        for name in ("concurrency", "retry_base_ms", "retry_max_ms"):
            _whole(name, getattr(self, name), minimum=1)
        for name in ("lease_ms", "max_attempts"):
            value = getattr(self, name)
            if value is not None:
                _whole(name, value, minimum=1)
        if self.max_attempts is not None and self.max_attempts > MAX_ATTEMPTS:
            raise InvalidArgument(
                f"max_attempts must be from 1 to {MAX_ATTEMPTS}, got {self.max_attempts}"
            )
        if self.retry_max_ms < self.retry_base_ms:
            raise InvalidArgument("retry_max_ms must be >= retry_base_ms")
        for name in ("grace_s", "sweep_every_s", "idle_wait_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (value == 0 and name != "grace_s")
            ):
                raise InvalidArgument(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.schedules, bool):
            raise InvalidArgument(f"schedules must be a bool, got {self.schedules!r}")
        worker_id = self.worker_id
        if worker_id is not None and (not isinstance(worker_id, str) or not worker_id):
            raise InvalidArgument(f"worker_id must be a non-empty string, got {self.worker_id!r}")
        check_worker_id(worker_id)

    def check_against(self, config: StoreConfig) -> None:
        """Raise InvalidArgument for a setting the store's limits refuse.

        Its claims, renewals and releases would be refused each time, and the worker
        would go on logging the refusal; this says it once, before anything starts.
        """
        if self.concurrency > config.max_claim_count:
            raise InvalidArgument(
                f"concurrency must be from 1 to {config.max_claim_count} "
                f"(the store's max_claim_count), got {self.concurrency}"
            )
        if self.lease_ms is not None and self.lease_ms > config.max_lease_ms:
            raise InvalidArgument(
                f"lease_ms must be from 1 to {config.max_lease_ms} "
                f"(the store's max_lease_ms), got {self.lease_ms}"
            )
        limit = delay_limit_ms(config)
        if self.retry_base_ms > limit:
            raise InvalidArgument(
                f"retry_base_ms must be at most {limit} (the longest delay the store "
                f"takes), got {self.retry_base_ms}"
            )

    def renew_every_s(self, lease_ms: int) -> float:
        """How often the held leases are renewed: a third of the lease, so two renewals may fail."""
        return max(lease_ms / 3000, 0.01)


def delay_limit_ms(config: StoreConfig) -> int:
    """The longest retry pause the store takes (``release``); longer ones are cut to it."""
    return config.max_ttl_ms if config.max_ttl_ms is not None else DELAY_LIMIT_MS


def _whole(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {value!r}")


DEFAULT_SETTINGS = WorkerSettings()
"""The worker's settings when none is given."""


def retry_delay_ms(attempt: int, base_ms: int, max_ms: int) -> int:
    """The pause before the attempt after failed ``attempt`` (1-based): exponential, jittered.

    ``base_ms * 2 ** (attempt - 1)``, capped at ``max_ms``, then drawn uniformly from its
    upper half, so workers that failed together do not retry together.
    """
    ceiling = min(max_ms, base_ms * 2 ** min(max(attempt, 1) - 1, 40))
    return int(random.uniform(ceiling / 2, ceiling))


MAX_MESSAGE_LENGTH = 4096
"""A failed task's status message keeps at most this many characters of the exception's."""


def failure_message(exc: BaseException, max_length: int = MAX_MESSAGE_LENGTH) -> str:
    """The status message of a task whose handler raised ``exc`` on its last attempt.

    The exception's message (its type's name when it has none), as valid Unicode,
    cut to ``max_length`` characters.
    """
    text = str(exc).strip() or type(exc).__name__
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= max_length else text[: max_length - 3] + "..."


def failure_result(message: str, exc: BaseException) -> dict[str, str]:
    """The result of a task whose handler raised ``exc`` on its last attempt."""
    return {FAILED_RESULT_KEY: message, "type": type(exc).__name__}


def out_of_attempts(attempt: int, task_max_attempts: int, cap: int | None) -> bool:
    """Whether a failed ``attempt`` was the last: the task's own limit, or the worker's if lower."""
    limit = task_max_attempts if cap is None else min(cap, task_max_attempts)
    return attempt >= limit
