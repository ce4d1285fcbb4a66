"""The demo's plan: what each task goes through and what it must end up as.

Every task ``i`` follows a plan known in advance:

- a worker merges ``{"worker": w}``, then ``{"step1": ...}``, ``{"step2": ...}``,
  ``{"step3": ...}`` (values computed from the seed and ``i``);
- it moves the task to ``input_required`` and waits (``wait``, no polling)
  until the client has merged ``{"approval": "yes"}`` and moved the task back
  to ``working``;
- it completes the task with ``{"sum": i + step1 + step2 + step3}`` (the steps as
  read back from the store), or, for every 10th task, fails it with
  ``{"error": ...}``;
- every 25th task is cancelled by the client right after its approval, racing the
  worker's completion: exactly one of the two wins, and the demo counts both.
"""

from __future__ import annotations

from ..._core.config import SecurityConfig, StoreConfig
from ..._core.model import JSONValue
from ..._core.status import TaskStatus

TTL_MS = 3_600_000
"""Demo tasks live an hour, so they can be inspected afterwards; then they expire."""
CANCEL_RACE_S = 0.002
"""Half the planned cancels are sent right after the approval, half up to this long after.

The worker wakes within milliseconds of the approval, so the race stays open:
some cancels win, some lose to the worker's completion."""
STEPS = 3
FAIL_EVERY = 10
"""Task ``i`` fails on purpose when ``i % FAIL_EVERY == FAIL_EVERY - 1``."""
CANCEL_EVERY = 25
"""Task ``i`` is cancelled by the client when ``i % CANCEL_EVERY == 0``."""
REQUEST_METHOD = "tools/call"
QUEUE = "demo"
"""The queue the client submits to and the workers claim from."""
LEASE_MS = 2_000
"""The demo's lease: short, so a killed worker's tasks (``--chaos``) are taken over
within seconds; the workers renew what they hold every third of it."""
DONE_MESSAGE = "done"
FAILED_MESSAGE = "failed on purpose"
WAIT_MESSAGE = "waiting for approval"
APPROVED_MESSAGE = "approved by the client"
MAX_ERRORS_KEPT = 20
"""Unexpected errors kept (and printed) per worker and for the client."""

CONFIG = StoreConfig(default_ttl_ms=TTL_MS)
SECURITY = SecurityConfig(max_tasks_per_owner=None)

Job = tuple[int, str, str]
"""(task index, task id, owner id): a task as the demo knows it."""


def owner_id(number: int) -> str:
    """The id of the demo's owner ``number``."""
    return f"demo-owner-{number}"


def step_value(seed: int, index: int, step: int) -> int:
    """Return the value a worker merges as ``step<step>`` of task ``index``."""
    return (seed * 1_000_003 + index * 7_919 + step * 104_729) % 10_007


def expected_sum(seed: int, index: int) -> int:
    """Return the ``sum`` a worker must report for task ``index``."""
    return index + sum(step_value(seed, index, step) for step in range(1, STEPS + 1))


def planned_status(index: int) -> TaskStatus:
    """Return the terminal status a worker aims for (a cancel may still win)."""
    return TaskStatus.FAILED if index % FAIL_EVERY == FAIL_EVERY - 1 else TaskStatus.COMPLETED


def is_cancel_planned(index: int) -> bool:
    """Tell whether the client cancels task ``index`` while it is working."""
    return index % CANCEL_EVERY == 0


def result_for(status: TaskStatus, index: int, total: int) -> JSONValue:
    """Return the result a worker attaches when it moves task ``index`` to ``status``."""
    if status is TaskStatus.FAILED:
        return {"error": f"task {index} failed on purpose (sum {total})"}
    return {"sum": total}


def message_for(status: TaskStatus) -> str:
    """The status message of a task the worker ended with ``status``."""
    return DONE_MESSAGE if status is TaskStatus.COMPLETED else FAILED_MESSAGE
