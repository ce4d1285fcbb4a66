"""The values a storage backend takes and returns.

A backend is a versioned key-value store with no domain rules: it never parses
the JSON it stores and never judges a transition. These types are shared by the
async and the sync backends.
"""

from __future__ import annotations

import enum

import msgspec


class VersionedRecord(msgspec.Struct, frozen=True):
    """What a backend returns for one task: its stored bytes and their version."""

    version: int
    data: bytes


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
    """The owner already had ``max_live`` live tasks; nothing was written."""
    ALREADY_EXISTS = "already_exists"
    """A record with that key exists; nothing was written."""


class CasResult(msgspec.Struct, frozen=True):
    """What ``StorageBackend.compare_and_set`` did.

    On success ``version`` is the new version. On a conflict ``applied`` is false
    and ``current`` holds the record as it is now (None when it is gone), so the
    caller can retry without another read.
    """

    applied: bool
    version: int
    current: VersionedRecord | None = None


class BackendPage(msgspec.Struct, frozen=True):
    """Records of one list page, newest first, and where the next page starts."""

    records: list[VersionedRecord]
    next_position: ListPosition | None
