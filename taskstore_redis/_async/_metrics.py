"""Measure the store's operations when OpenTelemetry is installed (see ``_runtime/metrics.py``).

Besides timing the operations, ``submit`` and ``claim_many`` (which ``claim`` calls) count
the queue's ``submitted`` and ``claimed`` tasks; so does the worker's round
(``_complete_and_claim``) for the tasks it claims.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from .._runtime import metrics
from ._protocols import TaskStore

_outer = contextvars.ContextVar("taskstore_redis_measured", default=False)
"""Whether an operation is being measured in this context: an inner call is not counted."""

OPERATIONS = tuple(
    name
    for name, value in vars(TaskStore).items()
    if not name.startswith("_") and inspect.isfunction(value)
)
"""The operations of the TaskStore protocol: the methods measured."""


def measure_operations(cls: type) -> None:
    """Wrap ``cls``'s operations to count and time them; nothing without OpenTelemetry."""
    if not metrics.ENABLED:
        return
    for name in OPERATIONS:
        method = vars(cls).get(name)
        if method is not None:
            setattr(cls, name, _measured(name, method))
    for name, (counter, queues_of) in _QUEUE_COUNTS.items():
        method = getattr(cls, name, None)  # submit and claim_many: inherited (_queues.py)
        if method is not None:
            setattr(cls, name, _counted(counter, queues_of, method))


def _submitted(record: Any) -> Iterable[tuple[str, int]]:
    job = getattr(record, "job", None)
    return [(job.queue, 1)] if job is not None else []


def _claimed(leases: Any) -> Iterable[tuple[str, int]]:
    return Counter(lease.queue for lease in leases).items()


def _claimed_in_round(outcomes_and_leases: Any) -> Iterable[tuple[str, int]]:
    return _claimed(outcomes_and_leases[1])


_QUEUE_COUNTS: dict[str, tuple[str, Callable[[Any], Iterable[tuple[str, int]]]]] = {
    "submit": ("submitted", _submitted),
    "claim_many": ("claimed", _claimed),
    "_complete_and_claim": ("claimed", _claimed_in_round),  # run_worker's rounds
}
"""Store methods that count queue tasks: the counter, and the queues' counts in the result."""


def _counted(
    counter: str, queues_of: Callable[[Any], Iterable[tuple[str, int]]], method: Callable[..., Any]
) -> Callable[..., Any]:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        result = await method(*args, **kwargs)
        instruments = metrics.queue_instruments()
        assert instruments is not None  # metrics.ENABLED
        for queue, amount in queues_of(result):
            instruments.count(counter, queue, amount)
        return result

    return counted


def _measured(operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def measured(*args: Any, **kwargs: Any) -> Any:
        if _outer.get():
            return await method(*args, **kwargs)
        instruments = metrics.store_instruments()
        assert instruments is not None  # metrics.ENABLED
        token = _outer.set(True)
        error: BaseException | None = None
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            instruments.record(operation, error, time.perf_counter() - start)
            _outer.reset(token)

    return measured
