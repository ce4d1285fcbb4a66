"""The values a storage backend takes and returns.

A backend is a versioned key-value store with no domain rules: it never parses
the JSON it stores and never judges a transition. These types are shared by the
async and the sync backends.
"""

from __future__ import annotations

import enum

import msgspec


class VersionedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend returns for one task: its stored parts and their versions.

    The backend never parses any of these bytes: ``data`` is the core record (all
    but the variables) as the store encoded it, ``variables`` the JSON object that
    the backend joins from the variables' separately stored members.
    """

    version: int
    """Goes up by one with every write of the task (status, result or variables)."""
    core_version: int
    """Goes up by one with every write of the core record; compare-and-set checks it."""
    data: bytes
    """The core record, canonical JSON."""
    variables: bytes = b"{}"
    """The variables as one JSON object (members in no particular order)."""
    updated_at_ms: int | None = None
    """When the task was last written, or None if never since its creation."""
    format: str = ""
    """The stored format version, ``"<major>.<minor>"``."""
    task_id: str = ""
    """The task's id, as its key holds it (filled in list pages)."""


class TaskKey(msgspec.Struct, frozen=True):
    """Where a task lives: its owner and its id, kept apart, never joined into one string."""

    owner_id: str
    task_id: str


class ListPosition(msgspec.Struct, frozen=True, array_like=True):
    """A place in an owner's index: tasks sort newest first by (created_at_ms, task_id)."""

    created_at_ms: int
    task_id: str


class CreateOutcome(enum.Enum):
    """What ``StorageBackend.create`` did."""

    CREATED = "created"
    """The record was written with version 1 and indexed."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """The owner already had ``max_live`` unexpired, non-terminal tasks; nothing was written."""
    ALREADY_EXISTS = "already_exists"
    """A record with that key exists; nothing was written."""


class NewTask(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``StorageBackend.create`` writes: one value, the same for every backend."""

    key: TaskKey
    format: str
    """The stored format version of ``data``, ``"<major>.<minor>"``."""
    data: bytes
    """The core record, canonical JSON."""
    created_at_ms: int
    expires_at_ms: int | None
    purge_at_ms: int | None
    """When the backend may drop the record by itself (None: never)."""
    max_live: int | None
    """Refuse when the owner already has this many unexpired, non-terminal tasks."""
    now_ms: int


class CoreWrite(msgspec.Struct, frozen=True, kw_only=True):
    """A compare-and-set of a task's core record (status, message, result)."""

    key: TaskKey
    expected_core_version: int
    format: str
    """The format of ``data``; a task stored in another major or a newer minor format
    is a conflict, never rewritten."""
    data: bytes
    created_at_ms: int
    """The task's creation time: with its id, its place in the owner's index."""
    terminal: bool
    """The new core record is terminal: the task stops counting against the quota."""
    now_ms: int


class VariableMerge(msgspec.Struct, frozen=True, kw_only=True):
    """A merge of variables: each entry is the canonical JSON of a key and of its value.

    The backend writes only the variables named, so merges of distinct keys
    never conflict; it refuses (writing nothing) when the task is missing,
    expired, of another format major, or when the merged variables' canonical
    JSON would exceed ``max_bytes``.
    """

    key: TaskKey
    format_major: int
    sets: list[tuple[bytes, bytes]]
    deletes: list[bytes]
    max_bytes: int
    now_ms: int


class CasResult(msgspec.Struct, frozen=True):
    """What ``StorageBackend.compare_and_set`` did.

    ``current`` holds the record as it is now: after the write when ``applied``,
    the conflicting record otherwise (None when the task is gone), so the caller
    can retry without another read.
    """

    applied: bool
    current: VersionedRecord | None = None


class MergeOutcome(enum.Enum):
    """What ``StorageBackend.merge_variables`` did."""

    APPLIED = "applied"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    TOO_LARGE = "too_large"
    OTHER_FORMAT = "other_format"


class MergeResult(msgspec.Struct, frozen=True):
    """The outcome of a merge, the record after it, the refused size or stored format."""

    outcome: MergeOutcome
    current: VersionedRecord | None = None
    size: int = 0
    format: str = ""


class BackendPage(msgspec.Struct, frozen=True):
    """Records of one list page, newest first, and where the next page starts."""

    records: list[VersionedRecord]
    next_position: ListPosition | None


class DeleteOutcome(enum.Enum):
    """What ``StorageBackend.delete`` did."""

    DELETED = "deleted"
    """The record and its index entries were removed, and its waiters told."""
    NOT_FOUND = "not_found"
    """No record at that key (or it is past its purge time); nothing was touched."""
    CHANGED = "changed"
    """The core record there is not the one given (the task changed since it was read,
    or another task with the same id took its place); nothing was touched."""


class TaskRemoval(msgspec.Struct, frozen=True, kw_only=True):
    """A deletion of one task, as ``StorageBackend.delete`` takes it."""

    key: TaskKey
    created_at_ms: int
    """The task's creation time: with its id, its place in the owner's index."""
    data: bytes
    """The core record as read: the task is removed only if it still holds these bytes."""
