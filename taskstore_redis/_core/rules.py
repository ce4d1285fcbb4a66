"""The domain rules: pure functions of (record, request, now) that never do I/O.

The async and the sync store both drive these functions; each returns the new
record to write or raises the domain error, judged against the record given.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import msgspec

from .config import StoreConfig
from .errors import (
    InvalidArgument,
    InvalidTransition,
    NoResult,
    NotReady,
    TaskExpired,
    VariableSizeExceeded,
)
from .model import (
    JSONValue,
    Task,
    TaskRecord,
    datetime_from_ms,
    encode_json,
    ms_from_datetime,
    timestamp_from_ms,
)
from .status import INITIAL_STATUS, TaskStatus, can_transition


def new_record(
    owner_id: str,
    request_method: str,
    ttl_ms: int | None,
    now_ms: int,
    config: StoreConfig,
    task_id: str | None = None,
) -> TaskRecord:
    """Build the record of a task created at ``now_ms`` (version 0 until stored).

    Its id is ``task_id``, or a fresh UUID4 when None.
    """
    stamp = timestamp_from_ms(now_ms)
    return TaskRecord(
        task=Task(
            task_id=str(uuid.uuid4()) if task_id is None else task_id,
            status=INITIAL_STATUS,
            created_at=stamp,
            last_updated_at=stamp,
            ttl=ttl_ms,
            poll_interval=config.poll_interval_ms,
        ),
        owner_id=owner_id,
        variables={},
        result=None,
        request_method=request_method,
        expires_at=None if ttl_ms is None else datetime_from_ms(now_ms + ttl_ms),
        version=0,
    )


def ensure_live(record: TaskRecord, now_ms: int) -> None:
    """Raise TaskExpired if the record's TTL has run out at ``now_ms``."""
    if record.is_expired(datetime_from_ms(now_ms)):
        raise TaskExpired(record.task.task_id)


def seconds_until_expiry(record: TaskRecord, now_ms: int) -> float:
    """Seconds from ``now_ms`` until the record's TTL runs out (``inf`` for never)."""
    if record.expires_at is None:
        return math.inf
    return (ms_from_datetime(record.expires_at) - now_ms) / 1000


def _touched(record: TaskRecord, now_ms: int, **task_changes: Any) -> Task:
    return msgspec.structs.replace(
        record.task, last_updated_at=timestamp_from_ms(now_ms), **task_changes
    )


def change_status(
    record: TaskRecord, status: TaskStatus, message: str | None, now_ms: int
) -> TaskRecord:
    """Move the task to ``status`` with ``message``, if the state machine allows it."""
    ensure_live(record, now_ms)
    current = record.task.status
    if not can_transition(current, status):
        raise InvalidTransition(record.task.task_id, current.value, status.value)
    task = _touched(record, now_ms, status=status, status_message=message)
    return msgspec.structs.replace(record, task=task)


def change_message(record: TaskRecord, message: str | None, now_ms: int) -> TaskRecord:
    """Replace the status message (None clears it), keeping the status, whatever it is."""
    ensure_live(record, now_ms)
    task = _touched(record, now_ms, status_message=message)
    return msgspec.structs.replace(record, task=task)


def check_result_size(result: JSONValue, config: StoreConfig) -> None:
    """Raise if the encoded result is above ``max_result_size_bytes``."""
    size = len(encode_json(result))
    if size > config.max_result_size_bytes:
        raise VariableSizeExceeded(config.max_result_size_bytes, size, what="result")


def store_result(record: TaskRecord, result: JSONValue, now_ms: int) -> TaskRecord:
    """Attach a result; a terminal task's result, once set, is final."""
    ensure_live(record, now_ms)
    if record.task.status.is_terminal and record.result is not None:
        raise InvalidArgument(
            f"task {record.task.task_id!r} is {record.task.status.value} and its result is final"
        )
    return msgspec.structs.replace(record, result=result, task=_touched(record, now_ms))


def complete(
    record: TaskRecord, status: TaskStatus, message: str | None, result: JSONValue, now_ms: int
) -> TaskRecord:
    """Move to a terminal ``status`` and attach ``result`` in one change."""
    moved = change_status(record, status, message, now_ms)
    return msgspec.structs.replace(moved, result=result)


def result_of(record: TaskRecord, now_ms: int) -> JSONValue:
    """Return the result of a terminal task, or raise NotReady, NoResult or TaskExpired."""
    ensure_live(record, now_ms)
    if not record.task.status.is_terminal:
        raise NotReady(record.task.task_id, record.task.status.value)
    if record.result is None:
        raise NoResult(record.task.task_id, record.task.status.value)
    return record.result
