"""run_scheduler: fire a store's schedules as they come due, until stopped."""

from __future__ import annotations

from .._core.errors import InvalidArgument
from ._schedules import StopFlag
from ._store import GenericTaskStore


async def run_scheduler(store: GenericTaskStore, *, stop: StopFlag | None = None) -> None:
    """Fire the schedules of ``store`` (``GenericTaskStore.schedule``) as they come due.

    Each tick submits one task, however many processes run ``run_scheduler`` or
    ``run_worker`` (which fires schedules too, unless ``schedules=False``): one atomic
    step claims it, on the store's clock. Between ticks the scheduler sleeps until the
    earliest next fire time; a schedule created, changed or deleted wakes it (no
    polling). Unreachable-store errors are logged (logger ``taskstore_redis.scheduler``)
    and retried with backoff.

    Runs until ``stop.is_set()`` (an Event, looked at every quarter second), or until
    cancelled.

    Raises InvalidArgument, at the call, for a store whose backend keeps no schedules.
    """
    if not isinstance(store, GenericTaskStore):
        raise InvalidArgument(
            "store must be a taskstore_redis.asyncio.GenericTaskStore (this run_scheduler's "
            f"flavour), got {type(store).__module__}.{type(store).__qualname__}"
        )
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise InvalidArgument(
            f"stop must have an is_set() method (an Event), got {type(stop).__name__}"
        )
    store._schedule_backend()
    await store._serve_schedules(stop)
