"""Measure the store's operations when OpenTelemetry is installed (see ``_core/metrics.py``)."""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from .._core import metrics
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
