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

Other areas add their instruments from :func:`meter` beside :class:`StoreInstruments`:
the work queues' counters, handler durations and gauges are :class:`QueueInstruments`
and :class:`QueueGauges` (see docs/operations/production.md, Metrics).
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._core.errors import TaskStoreError

_otel: Any
try:
    _otel = importlib.import_module("opentelemetry.metrics")
except ImportError:  # the otel extra is not installed
    _otel = None

_logger = logging.getLogger("taskstore_redis.metrics")

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


# --- work queues ---------------------------------------------------------------------------

QUEUE_COUNTERS = {
    "submitted": "Tasks submitted to the queue (submit)",
    "claimed": "Leases taken on the queue's tasks (claim, claim_many)",
    "completed": "Tasks a worker completed with its handler's result (run_worker)",
    "failed": "Tasks a worker failed after their last attempt (run_worker)",
    "recovered": "Expired leases a worker's sweeps requeued or failed (run_worker)",
    "lease_lost": "Leases a worker found lost and abandoned (run_worker)",
}
"""The queue counters, ``taskstore.queue.<name>`` (unit ``{task}``), by ``queue``."""

QUEUE_GAUGES = {
    "ready": "Tasks of the queue claimable now",
    "delayed": "Tasks of the queue claimable later",
    "leased": "Tasks of the queue held by workers",
}
"""The queue gauges, ``taskstore.queue.<name>`` (unit ``{task}``), by ``queue``."""

HANDLER_DURATION = "taskstore.queue.handler.duration"
GAUGE_SNAPSHOT_S = 1.0
"""A gauge reading of the queues is reused this long (one read serves all three gauges)."""
GAUGE_READ_TIMEOUT_S = 2.0
"""How long one queue's reading may take at collection time before it is left out."""


class QueueInstruments:
    """The counters and the handler-duration histogram of the work queues."""

    def __init__(self, source: Any) -> None:
        """Create the instruments on the meter ``source``."""
        self.counters = {
            name: source.create_counter(f"taskstore.queue.{name}", "{task}", description)
            for name, description in QUEUE_COUNTERS.items()
        }
        self.handler_duration = histogram(
            source,
            HANDLER_DURATION,
            "s",
            "Duration of run_worker's handler calls, by queue and outcome "
            "(completed, failed, retried, lost, stopped)",
        )

    def count(self, name: str, queue: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (a key of ``QUEUE_COUNTERS``) of ``queue``."""
        if amount:
            self.counters[name].add(amount, {"queue": queue})

    def handled(self, queue: str, outcome: str, seconds: float) -> None:
        """Record one handler call's duration and how it ended."""
        self.handler_duration.record(seconds, {"queue": queue, "outcome": outcome})


QueueReader = Callable[[], Any]
"""Reads one queue's ``QueueStats`` now (None when it cannot, from where it is called)."""


class QueueGauges:
    """The ready, delayed and leased gauges of the queues being watched in this process.

    OpenTelemetry calls the gauges' callbacks at collection time, in the thread that
    collects (a periodic exporter's own thread, or whoever calls ``collect``). Each
    watched queue has a reader that fetches ``queue_stats`` from there: a blocking
    store's call directly, an async store's call sent to its event loop, the thread
    waiting for the answer (at most ``GAUGE_READ_TIMEOUT_S``) while the loop carries
    on with its work. A reading serves the three gauges (``GAUGE_SNAPSHOT_S``); a
    queue whose reading fails or times out is left out of that collection.
    """

    def __init__(self, source: Any) -> None:
        """Create the observable gauges on the meter ``source``."""
        self._lock = threading.Lock()
        self._readers: dict[int, tuple[str, QueueReader]] = {}
        self._next = 0
        self._snapshot: dict[str, Any] = {}
        self._taken_at = float("-inf")
        for name, description in QUEUE_GAUGES.items():
            source.create_observable_gauge(
                f"taskstore.queue.{name}",
                callbacks=[functools.partial(self._observe, name)],
                unit="{task}",
                description=description,
            )

    def watch(self, queue: str, read: QueueReader) -> Callable[[], None]:
        """Report ``queue``'s numbers, read with ``read``, until the returned function is called."""
        with self._lock:
            self._next += 1
            token = self._next
            self._readers[token] = (queue, read)
            self._taken_at = float("-inf")

        def unwatch() -> None:
            with self._lock:
                self._readers.pop(token, None)
                self._snapshot.pop(queue, None)

        return unwatch

    def _observe(self, field: str, options: Any = None) -> list[Any]:
        assert _otel is not None
        return [
            _otel.Observation(getattr(stats, field), {"queue": queue})
            for queue, stats in self._read().items()
        ]

    def _read(self) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._taken_at < GAUGE_SNAPSHOT_S:
                return dict(self._snapshot)
            readers = dict(self._readers.values())  # one reader per queue
            self._taken_at = time.monotonic()
        snapshot: dict[str, Any] = {}
        skipped = False
        for queue, read in readers.items():
            try:
                stats = read()
            except Exception as exc:  # an unreachable store: the queue is left out this time
                _logger.debug("queue %r not read for the gauges: %s", queue, exc)
                continue
            if stats is None:
                skipped = True  # not readable from this thread: no reading to reuse
            else:
                snapshot[queue] = stats
        with self._lock:
            self._snapshot = snapshot
            if skipped:
                self._taken_at = float("-inf")
        return dict(snapshot)


_queue: QueueInstruments | None = None
_gauges: QueueGauges | None = None


def queue_instruments() -> QueueInstruments | None:
    """The work queues' instruments, made on first use; None without OpenTelemetry."""
    global _queue
    if _queue is None and ENABLED:
        with _lock:
            if _queue is None:
                _queue = QueueInstruments(meter())
    return _queue


def queue_gauges() -> QueueGauges | None:
    """The work queues' gauges, made on first use; None without OpenTelemetry."""
    global _gauges
    if _gauges is None and ENABLED:
        with _lock:
            if _gauges is None:
                _gauges = QueueGauges(meter())
    return _gauges
