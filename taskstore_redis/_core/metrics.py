"""Optional OpenTelemetry metrics (the ``otel`` extra: ``opentelemetry-api``).

Without OpenTelemetry installed nothing here imports it and nothing is measured:
the store's methods are left as they are, at no cost. With it, the store's
operations are counted and timed on the meter ``taskstore_redis`` of the global
``MeterProvider`` (a no-op until the application sets one):

* ``taskstore.operations`` (counter, ``{operation}``) and
* ``taskstore.operation.duration`` (histogram, seconds),

both with the attributes ``operation`` (``create``, ``get``, ... as the method is
named) and ``outcome`` (``ok``, or the class name of the library's error, such as
``TaskNotFound`` or ``StoreUnavailable``; ``cancelled`` when the call was
cancelled or interrupted; ``error`` for anything else). A call an operation makes
of another (``get_result`` reading with ``get``) counts once, as the outer one.

Other areas add their instruments from :func:`meter` beside :class:`StoreInstruments`.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from .errors import TaskStoreError

_otel: Any
try:
    _otel = importlib.import_module("opentelemetry.metrics")
except ImportError:  # the otel extra is not installed
    _otel = None

ENABLED = _otel is not None
"""Whether OpenTelemetry is installed, so the store's operations are measured."""

METER_NAME = "taskstore_redis"
OPERATIONS = "taskstore.operations"
DURATION = "taskstore.operation.duration"
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Seconds: a Redis round trip is well below a millisecond, a wait may take a minute."""


def meter() -> Any | None:
    """The library's meter from the global ``MeterProvider``; None without OpenTelemetry."""
    if _otel is None:
        return None
    from .. import __version__

    return _otel.get_meter(METER_NAME, __version__)


def histogram(source: Any, name: str, unit: str, description: str) -> Any:
    """A histogram with ``DURATION_BUCKETS`` advised (opentelemetry-api >= 1.23 takes them)."""
    try:
        return source.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
    except TypeError:
        return source.create_histogram(name, unit, description)


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` attribute of a call that raised ``error`` (None: it returned)."""
    if error is None:
        return "ok"
    if isinstance(error, TaskStoreError):
        return type(error).__name__
    if isinstance(error, Exception):
        return "error"
    return "cancelled"  # CancelledError, KeyboardInterrupt and the like


class StoreInstruments:
    """The counter and the histogram of the store's operations."""

    def __init__(self, source: Any) -> None:
        """Create the instruments on the meter ``source``."""
        self.calls = source.create_counter(
            OPERATIONS, "{operation}", "Task store operations, by operation and outcome"
        )
        self.duration = histogram(
            source, DURATION, "s", "Duration of task store operations, by operation and outcome"
        )

    def record(self, operation: str, error: BaseException | None, seconds: float) -> None:
        """Count one call of ``operation`` and its duration."""
        attributes = {"operation": operation, "outcome": outcome_of(error)}
        self.calls.add(1, attributes)
        self.duration.record(seconds, attributes)


_lock = threading.Lock()
_store: StoreInstruments | None = None


def store_instruments() -> StoreInstruments | None:
    """The store's instruments, made on first use; None without OpenTelemetry."""
    global _store
    if _store is None and ENABLED:
        with _lock:
            if _store is None:
                _store = StoreInstruments(meter())
    return _store
