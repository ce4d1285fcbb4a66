"""Everything that affects task statuses and their transitions lives in this module.

The state machine is the table :data:`TRANSITIONS`: a status maps to the
statuses it may move to. Terminal statuses map to nothing.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Final


class TaskStatus(enum.StrEnum):
    """The status of a task, as on the MCP wire."""

    WORKING = "working"
    INPUT_REQUIRED = "input_required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether no further status change is allowed."""
        return self in TERMINAL_STATUSES


_OPEN_TARGETS = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

TRANSITIONS: Final = MappingProxyType(
    {
        TaskStatus.WORKING: _OPEN_TARGETS | {TaskStatus.INPUT_REQUIRED},
        TaskStatus.INPUT_REQUIRED: _OPEN_TARGETS | {TaskStatus.WORKING},
        TaskStatus.COMPLETED: frozenset[TaskStatus](),
        TaskStatus.FAILED: frozenset[TaskStatus](),
        TaskStatus.CANCELLED: frozenset[TaskStatus](),
    }
)
"""Allowed moves: ``TRANSITIONS[from_status]`` is the set of reachable statuses."""

TERMINAL_STATUSES: Final = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
"""Statuses with no way out."""

INITIAL_STATUS: Final = TaskStatus.WORKING
"""The status of a newly created task."""


def can_transition(from_status: TaskStatus, to_status: TaskStatus) -> bool:
    """Tell whether the state machine allows ``from_status -> to_status``."""
    return to_status in TRANSITIONS[from_status]
