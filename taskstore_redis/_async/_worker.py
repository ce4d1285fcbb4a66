"""run_worker: claim tasks from a queue and run a handler on each, until stopped."""

from __future__ import annotations

from typing import Any

from .._core.config import StoreConfig
from .._core.errors import InvalidArgument
from .._core.worker_rules import DEFAULT_SETTINGS, WorkerSettings
from .._worker_loop import Handler, StopFlag, WorkerStats, async_run_worker
from ._store import GenericTaskStore


async def run_worker(
    store: GenericTaskStore,
    handler: Handler,
    *,
    queue: str = DEFAULT_SETTINGS.queue,
    concurrency: int = DEFAULT_SETTINGS.concurrency,
    lease_ms: int | None = DEFAULT_SETTINGS.lease_ms,
    max_attempts: int | None = DEFAULT_SETTINGS.max_attempts,
    retry_base_ms: int = DEFAULT_SETTINGS.retry_base_ms,
    retry_max_ms: int = DEFAULT_SETTINGS.retry_max_ms,
    grace_s: float = DEFAULT_SETTINGS.grace_s,
    sweep_every_s: float = DEFAULT_SETTINGS.sweep_every_s,
    idle_wait_s: float = DEFAULT_SETTINGS.idle_wait_s,
    worker_id: str | None = DEFAULT_SETTINGS.worker_id,
    schedules: bool = DEFAULT_SETTINGS.schedules,
    stop: StopFlag | None = None,
    handle_signals: bool = True,
) -> WorkerStats:
    """Claim tasks from ``queue`` and run ``handler(lease)`` on each, until stopped.

    ``handler`` is a sync function (run in a worker thread) or an async one. What it
    returns completes the task as ``completed`` with that result. If it raises, the
    task is released for another attempt after an exponential, jittered pause
    (``retry_base_ms`` doubling per attempt, at most ``retry_max_ms``); on the last
    attempt (the task's ``max_attempts`` from ``submit``, or this ``max_attempts`` if
    lower) the task ends ``failed``, its status message the exception's message and
    its result ``{"error": message, "type": exception type}``. A handler that raises
    ``LeaseLost`` (from a fenced write) gives the task up quietly.

    Up to ``concurrency`` handlers run at once; free slots are filled with one batch
    claim (``claim_many``), each lease for ``lease_ms`` (default: the store's
    ``default_lease_ms``). Every held lease is renewed in one ``renew_leases`` call
    each third of the lease; a lease found lost (it expired and another worker took
    the task, the task was cancelled or ended elsewhere) stops its handler (an async
    one is cancelled; a sync one is left to finish, its writes raise ``LeaseLost``)
    and nothing more is written for it. Every ``sweep_every_s`` (jittered) the worker
    sweeps expired leases of the queue (``recover_leases``), whoever held them.
    ``idle_wait_s`` bounds each wait for work, so a stop is seen that soon. With
    ``schedules`` (the default) the worker also fires the store's schedules as they
    come due, as ``run_scheduler`` does (each tick still submits one task, however many
    workers and schedulers run); ``schedules=False`` leaves that to others.
    Unreachable-store errors are logged (logger ``taskstore_redis.worker``) and
    retried; they do not stop the worker, and they never cost a task an attempt: a
    lease's write that the store does not answer (the handler's own, through its
    lease, or the completion) is sent again, with backoff, while the lease holds
    (see ``Lease``). Attempts count the handler's exceptions and lost leases only; a
    lease the store could not renew before it ran out is lost (its task is recovered
    for a later attempt, or fails if that was its last).

    The worker stops when ``stop.is_set()`` (an ``anyio.Event`` or
    ``threading.Event``), on SIGTERM (with ``handle_signals``, in the main thread), or
    when cancelled: it claims no more tasks, lets the running handlers finish within
    ``grace_s`` seconds, then stops the rest and releases what it still holds
    (``release(count_attempt=False)``: the attempt is handed back, not counted).
    Returns what it did.

    Raises InvalidArgument for a bad argument (one the store's limits refuse too:
    ``concurrency`` above ``max_claim_count``, ``lease_ms`` above ``max_lease_ms``), at
    the call, before anything starts.
    """
    _check_call(store, handler, stop, handle_signals)
    settings = WorkerSettings(
        queue=queue,
        concurrency=concurrency,
        lease_ms=lease_ms,
        max_attempts=max_attempts,
        retry_base_ms=retry_base_ms,
        retry_max_ms=retry_max_ms,
        grace_s=grace_s,
        sweep_every_s=sweep_every_s,
        idle_wait_s=idle_wait_s,
        worker_id=worker_id,
        schedules=schedules,
    )
    settings.check_against(store.config)
    return await async_run_worker(
        store, handler, settings, stop=stop, handle_signals=handle_signals
    )


def _check_call(store: Any, handler: Any, stop: Any, handle_signals: Any) -> None:
    """Raise InvalidArgument for a store, handler, stop flag or flag that cannot work."""
    if isinstance(store, GenericTaskStore):
        store._queue_backend()  # InvalidArgument for a backend without work queues
    elif (
        type(store).__name__ == "GenericTaskStore"
        or not isinstance(getattr(store, "config", None), StoreConfig)
        or not all(
            callable(getattr(store, name, None))
            for name in ("claim_many", "renew_leases", "recover_leases", "queue_stats")
        )
    ):
        # the other API's store, or something that is no store (a wrapper that has the
        # store's methods is taken as it is)
        raise InvalidArgument(
            "store must be a taskstore_redis.asyncio.GenericTaskStore (this run_worker's "
            f"flavour), got {type(store).__module__}.{type(store).__qualname__}"
        )
    if not callable(handler):
        raise InvalidArgument(f"handler must be callable, got {type(handler).__name__}")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise InvalidArgument(
            f"stop must have an is_set() method (an Event), got {type(stop).__name__}"
        )
    if not isinstance(handle_signals, bool):
        raise InvalidArgument(f"handle_signals must be a bool, got {handle_signals!r}")
