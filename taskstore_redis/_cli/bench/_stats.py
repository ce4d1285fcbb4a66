"""Throughput and latency percentiles from the timings of one scenario."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    """What the callers of one process did: operations, their window, and each latency."""

    ops: int
    started: float
    """``time.monotonic()`` when the timed work started (comparable across processes)."""
    finished: float
    """``time.monotonic()`` when the last caller finished."""
    latencies_ns: list[int]


@dataclass(frozen=True)
class Figures:
    """Throughput over the whole window, and latency percentiles of single operations."""

    ops: int
    seconds: float
    throughput: float
    """Operations per second, all callers together."""
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def as_json(self) -> dict[str, float | int]:
        """The figures as plain JSON."""
        return {
            "ops": self.ops,
            "seconds": round(self.seconds, 6),
            "throughput": round(self.throughput, 3),
            "p50_ms": round(self.p50_ms, 6),
            "p95_ms": round(self.p95_ms, 6),
            "p99_ms": round(self.p99_ms, 6),
        }


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """The nearest-rank percentile of values sorted ascending (0 for no values)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def combine(parts: Sequence[Timings]) -> Figures:
    """Merge the timings of the processes of one scenario.

    Throughput is every operation over the window from the first start to the
    last finish; the latencies of all processes are pooled before the percentiles.
    """
    ops = sum(part.ops for part in parts)
    window = max(part.finished for part in parts) - min(part.started for part in parts)
    latencies = sorted(value for part in parts for value in part.latencies_ns)
    return Figures(
        ops=ops,
        seconds=window,
        throughput=ops / window if window > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) / 1e6,
        p95_ms=percentile(latencies, 0.95) / 1e6,
        p99_ms=percentile(latencies, 0.99) / 1e6,
    )
