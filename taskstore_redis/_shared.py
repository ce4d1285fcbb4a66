"""The public names shared by the sync and the async API (types, settings, errors)."""

from __future__ import annotations

from ._core.backend_types import (
    BackendPage,
    CasResult,
    CoreWrite,
    CreateOutcome,
    ListPosition,
    MergeOutcome,
    MergeResult,
    NewTask,
    TaskKey,
    VariableMerge,
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
    ServerMisconfigured,
    StorageCorrupted,
    StoreUnavailable,
    TaskExpired,
    TaskNotFound,
    TaskStoreError,
    UnsupportedFormat,
    VariableSizeExceeded,
    WaitTimeout,
)
from ._core.model import Task, TaskPage, TaskRecord
from ._core.status import TERMINAL_STATUSES, TRANSITIONS, TaskStatus

# every name the sync and the async faces share (errors, model, settings, backend types)
__all__ = [
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "AnonymousAccessDenied",
    "BackendPage",
    "CasResult",
    "ConcurrentModification",
    "CoreWrite",
    "CreateOutcome",
    "InvalidArgument",
    "InvalidTransition",
    "ListPosition",
    "MergeOutcome",
    "MergeResult",
    "NewTask",
    "NoResult",
    "NotReady",
    "ResourceExhausted",
    "SecurityConfig",
    "ServerMisconfigured",
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
    "UnsupportedFormat",
    "VariableMerge",
    "VariableSizeExceeded",
    "VersionedRecord",
    "WaitTimeout",
]
