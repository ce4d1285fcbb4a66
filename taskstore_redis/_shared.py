"""The public names shared by the sync and the async API (types, settings, errors)."""

from __future__ import annotations

from ._core import backend_types
from ._core.config import SecurityConfig, StoreConfig
from ._core.errors import (
    AnonymousAccessDenied,
    ConcurrentModification,
    InvalidArgument,
    InvalidLeaseToken,
    InvalidTransition,
    LeaseLost,
    NoResult,
    NotReady,
    PartialSubmit,
    ResourceExhausted,
    ScheduleNameTaken,
    ServerMisconfigured,
    StorageCorrupted,
    StoreUnavailable,
    TaskAlreadyExists,
    TaskExpired,
    TaskNotFound,
    TaskStoreError,
    UnsupportedFormat,
    VariableSizeExceeded,
    WaitTimeout,
)
from ._core.model import (
    JobInfo,
    JSONValue,
    LeaseInfo,
    Limits,
    QueueLimits,
    QueueStats,
    Task,
    TaskPage,
    TaskRecord,
)
from ._core.schedules import ScheduleInfo
from ._core.status import TERMINAL_STATUSES, TRANSITIONS, TaskStatus

# every name the sync and the async faces share (errors, model, settings)
__all__ = [
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "AnonymousAccessDenied",
    "ConcurrentModification",
    "InvalidArgument",
    "InvalidLeaseToken",
    "InvalidTransition",
    "JSONValue",
    "JobInfo",
    "LeaseInfo",
    "LeaseLost",
    "Limits",
    "NoResult",
    "NotReady",
    "PartialSubmit",
    "QueueLimits",
    "QueueStats",
    "ResourceExhausted",
    "ScheduleInfo",
    "ScheduleNameTaken",
    "SecurityConfig",
    "ServerMisconfigured",
    "StorageCorrupted",
    "StoreConfig",
    "StoreUnavailable",
    "Task",
    "TaskAlreadyExists",
    "TaskExpired",
    "TaskNotFound",
    "TaskPage",
    "TaskRecord",
    "TaskStatus",
    "TaskStoreError",
    "UnsupportedFormat",
    "VariableSizeExceeded",
    "WaitTimeout",
]

MOVED_TO_BACKEND = frozenset(
    [*backend_types.__all__, "QueueBackend", "QueueWatch", "StorageBackend", "TaskWatch"]
)
"""Names the top level used to export, now in its ``backend`` module."""


def missing_name(module: str, name: str) -> AttributeError:
    """The error for a name ``module`` lacks; one that moved says where to."""
    if name in MOVED_TO_BACKEND:
        return AttributeError(f"{module}.{name} moved to {module}.backend", name=name)
    return AttributeError(f"module {module!r} has no attribute {name!r}", name=name)
