"""Wall-clock time and retry pauses, the store's only sources of time."""

from __future__ import annotations

import random
import time


def now_ms() -> int:
    """Milliseconds since the epoch, from the wall clock."""
    return time.time_ns() // 1_000_000


def backoff_seconds(attempt: int) -> float:
    """Pause before compare-and-set retry ``attempt`` (0-based): full jitter, capped at 50 ms."""
    ceiling: float = min(0.05, 0.001 * (2**attempt))
    return random.uniform(0, ceiling)
