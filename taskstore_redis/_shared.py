"""The public names shared by the sync and the async API (types, settings, errors)."""

from __future__ import annotations

from ._core.backend_types import (
    BackendPage,
    CasResult,
    CreateOutcome,
    ListPosition,
    TaskKey,
    VersionedRecord,
)
from ._core.config import SecurityConfig, StoreConfig
from ._core.errors import (
    AnonymousAccessDenied,
    ConcurrentModification,
    InvalidArgument,
    InvalidTransition,
    NoResult,
    NotReady,
    ResourceExhausted,
    StorageCorrupted,
    StoreUnavailable,
    TaskExpired,
    TaskNotFound,
    TaskStoreError,
    VariableSizeExceeded,
    WaitTimeout,
)
from ._core.model import Task, TaskPage, TaskRecord
from ._core.status import TERMINAL_STATUSES, TRANSITIONS, TaskStatus

__all__ = [
    # model
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    # errors
    "AnonymousAccessDenied",
    # backend types
    "BackendPage",
    "CasResult",
    "ConcurrentModification",
    "CreateOutcome",
    "InvalidArgument",
    "InvalidTransition",
    "ListPosition",
    "NoResult",
    "NotReady",
    "ResourceExhausted",
    # settings
    "SecurityConfig",
    "StorageCorrupted",
    "StoreConfig",
    "StoreUnavailable",
    "Task",
    "TaskExpired",
    "TaskKey",
    "TaskNotFound",
    "TaskPage",
    "TaskRecord",
    "TaskStatus",
    "TaskStoreError",
    "VariableSizeExceeded",
    "VersionedRecord",
    "WaitTimeout",
]
