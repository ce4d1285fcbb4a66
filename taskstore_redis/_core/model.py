"""The task model, its canonical JSON encoding and its decoding.

There is one encoder for the whole library, with a deterministic key order:
equal records encode to identical bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

import msgspec

from .backend_types import VersionedRecord
from .errors import StorageCorrupted
from .status import TaskStatus

JSONValue: TypeAlias = Any
"""A value made of dicts with str keys, lists, str, int, float, bool and None."""


def timestamp_from_ms(epoch_ms: int) -> str:
    """Format milliseconds since the epoch as an MCP wire timestamp."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC).isoformat()[:19]}.{millis:03d}Z"


def datetime_from_ms(epoch_ms: int) -> datetime:
    """Turn milliseconds since the epoch into an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def ms_from_datetime(moment: datetime) -> int:
    """Turn an aware datetime into whole milliseconds since the epoch."""
    return round(moment.timestamp() * 1000)


class Task(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A task as on the MCP 2025-11-25 wire (camelCase, ``statusMessage`` left out when None)."""

    task_id: str
    status: TaskStatus
    status_message: str | None = None
    created_at: str
    """ISO 8601 UTC with milliseconds and ``Z``."""
    last_updated_at: str
    """ISO 8601 UTC with milliseconds and ``Z``."""
    ttl: int | None
    """Milliseconds from creation until the task expires, or None for never; always on the wire."""
    poll_interval: int
    """Suggested milliseconds between polls."""


class _StoredRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a backend stores: a record without its version."""

    task: Task
    owner_id: str
    request_method: str
    variables: dict[str, JSONValue]
    result: JSONValue
    expires_at_ms: int | None


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A task with everything the store keeps about it."""

    task: Task
    owner_id: str
    variables: dict[str, JSONValue]
    result: JSONValue
    """The task's result, or None while it has none."""
    request_method: str
    expires_at: datetime | None
    """When the TTL runs out (aware, UTC), or None for never."""
    version: int
    """The storage version this record was read at; not part of the stored JSON."""

    def is_expired(self, now: datetime | None = None) -> bool:
        """Tell whether the TTL has run out at ``now`` (default: the current time)."""
        if self.expires_at is None:
            return False
        return (now or datetime.now(UTC)) >= self.expires_at

    def to_wire_task(self) -> dict[str, JSONValue]:
        """Return the MCP wire object of the task, ready for JSON."""
        wire: dict[str, JSONValue] = msgspec.to_builtins(self.task)
        return wire

    def to_wire_task_with_variables(self) -> dict[str, JSONValue]:
        """Return the wire object with the task's variables merged into ``_meta``."""
        wire = self.to_wire_task()
        meta = dict(wire.get("_meta") or {})
        meta.update(self.variables)
        wire["_meta"] = meta
        return wire


class TaskPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of an owner's tasks, newest first."""

    tasks: list[TaskRecord]
    next_cursor: str | None
    """Pass to ``list`` for the next page; None on the last page."""


_encoder = msgspec.json.Encoder(order="deterministic")
_record_decoder = msgspec.json.Decoder(_StoredRecord)


def encode_json(value: object) -> bytes:
    """Encode a value as canonical JSON (the library's one encoder)."""
    return _encoder.encode(value)


def encode_record(record: TaskRecord) -> bytes:
    """Encode a record, without its version, as canonical JSON."""
    expires_at_ms = None if record.expires_at is None else ms_from_datetime(record.expires_at)
    return _encoder.encode(
        _StoredRecord(
            task=record.task,
            owner_id=record.owner_id,
            request_method=record.request_method,
            variables=record.variables,
            result=record.result,
            expires_at_ms=expires_at_ms,
        )
    )


def decode_record(stored: VersionedRecord) -> TaskRecord:
    """Decode stored bytes into a record; raise StorageCorrupted if they are not one."""
    try:
        raw = _record_decoder.decode(stored.data)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise StorageCorrupted(f"stored task record does not decode: {exc}") from exc
    return TaskRecord(
        task=raw.task,
        owner_id=raw.owner_id,
        variables=raw.variables,
        result=raw.result,
        request_method=raw.request_method,
        expires_at=None if raw.expires_at_ms is None else datetime_from_ms(raw.expires_at_ms),
        version=stored.version,
    )
