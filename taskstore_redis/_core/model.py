"""The task model, its canonical JSON encoding and its decoding.

There is one encoder for the whole library, with a deterministic key order:
equal records encode to identical bytes.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Any, TypeAlias

import msgspec

from .backend_types import StoredJob, VersionedRecord
from .errors import StorageCorrupted, UnsupportedFormat
from .status import TaskStatus

JSONValue: TypeAlias = Any
"""A value made of dicts with str keys, lists, str, int, float, bool and None."""


@functools.lru_cache(maxsize=4096)
def _second_stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()[:19]


_MILLIS_SUFFIX = tuple(f".{millis:03d}Z" for millis in range(1000))


def timestamp_from_ms(epoch_ms: int) -> str:
    """Format milliseconds since the epoch as an MCP wire timestamp."""
    seconds, millis = divmod(epoch_ms, 1000)
    return _second_stamp(seconds) + _MILLIS_SUFFIX[millis]


def datetime_from_ms(epoch_ms: float) -> datetime:
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


FORMAT_MAJOR = 2
FORMAT_MINOR = 0
FORMAT = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"
"""The stored format this process writes: it reads every ``2.x``, rewrites up to ``2.0``."""


class _Core(msgspec.Struct, frozen=True, array_like=True):
    """The stored core record: everything but the variables and what the key says.

    A JSON array, in this order, with trailing nulls left out; elements after the
    last known one are ignored when decoding, so a record written by a newer minor
    format (which may only append) still reads. The task id and the owner id are
    not stored in it: the task's key holds them.
    """

    status: TaskStatus
    created_at_ms: int
    poll_interval_ms: int
    request_method: str
    ttl_ms: int | None = None
    status_message: str | None = None
    result: JSONValue = None


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Where a submitted task stands in its queue (see ``GenericTaskStore.submit``)."""

    queue: str
    state: str
    """``"ready"``, ``"delayed"`` (claimable at ``ready_at``), ``"leased"`` (a worker holds
    it until ``lease_expires_at``), ``"lost"`` (attempts used up; being failed) or ``"done"``."""
    attempt: int
    """Claims so far (the current lease's attempt while leased), 1-based once claimed."""
    max_attempts: int
    token: int
    """The fencing token of the latest claim (0 before the first)."""
    worker_id: str | None
    """The worker of the latest claim."""
    lease_expires_at: datetime | None
    """While leased: when the lease runs out unless renewed (the server's clock)."""
    ready_at: datetime | None
    """When the task became (or becomes) claimable (the server's clock)."""


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's numbers, summed over its shards (see ``GenericTaskStore.queue_stats``)."""

    queue: str
    ready: int
    """Tasks claimable now (including any whose TTL ran out, until a claim drops them)."""
    delayed: int
    """Tasks claimable later (a delay or a release with a delay)."""
    leased: int
    """Tasks held by workers (and lost ones waiting to be failed)."""
    oldest_ready_age_ms: float | None
    """How long the oldest claimable task has waited; None when none is ready."""
    submitted: int = 0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    released: int = 0
    recovered: int = 0
    """Expired leases whose task went back to the queue for another attempt."""
    given_up: int = 0
    """Tasks failed because their last attempt's worker was lost (or released it)."""


_JOB_STATES = {"l": "leased", "x": "lost", "y": "lost", "d": "done"}


def job_info(job: StoredJob, now_ms: float) -> JobInfo:
    """The public view of a stored job; ``now_ms`` tells ready from delayed."""
    state = _JOB_STATES.get(job.state)
    ready_at = job.ready_at_ms
    if state is None:
        state = "delayed" if ready_at is not None and ready_at > now_ms else "ready"
    deadline = job.lease_deadline_ms if job.state == "l" else None
    return JobInfo(
        queue=job.queue,
        state=state,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        token=job.token,
        worker_id=job.worker_id or None,
        lease_expires_at=None if deadline is None else datetime.fromtimestamp(deadline / 1000, UTC),
        ready_at=None if ready_at is None else datetime.fromtimestamp(ready_at / 1000, UTC),
    )


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
    params: JSONValue = None
    """A submitted task's job input (``submit``); None otherwise. Not on the MCP wire."""
    job: JobInfo | None = None
    """A submitted task's place in its queue; None for a task made by ``create``."""

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
_core_decoder = msgspec.json.Decoder(_Core)
_variables_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_json(value: object) -> bytes:
    """Encode a value as canonical JSON (the library's one encoder)."""
    return _encoder.encode(value)


def encode_core(record: TaskRecord, created_at_ms: int) -> bytes:
    """Encode a record's core (all but its version and variables) as canonical JSON.

    The array of ``_Core``'s fields in order, without its trailing nulls.
    """
    task = record.task
    result = record.result
    core: list[Any] = [
        task.status,
        created_at_ms,
        task.poll_interval,
        record.request_method,
        task.ttl,
        task.status_message,
        result,
    ]
    if result is None:
        del core[-1]
        while core[-1] is None and len(core) > 4:
            del core[-1]
    return _encoder.encode(core)


def encode_variable_changes(
    variables: dict[str, JSONValue],
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """Split a merge into (key, value) pairs to set and keys to delete, each as canonical JSON.

    The canonical JSON of the merged variables is ``{`` + the ``key:value`` members
    joined by ``,`` + ``}`` (in key order), so its size follows from these lengths.
    """
    sets: list[tuple[bytes, bytes]] = []
    deletes: list[bytes] = []
    for name, value in variables.items():
        if value is None:
            deletes.append(_encoder.encode(name))
        else:
            sets.append((_encoder.encode(name), _encoder.encode(value)))
    return sets, deletes


def variables_size(members: int, total: int) -> int:
    """The canonical JSON size of an object of ``members`` members.

    ``total`` is the sum of the lengths of their ``key:value`` texts.
    """
    return 2 + total + max(members - 1, 0)


def format_at_most(stored: str, major: int, minor: int) -> bool:
    """Tell whether the format ``stored`` (``"<major>.<minor>"``) is ``major``.(<= ``minor``)."""
    if stored == FORMAT:
        return True
    found_major, _, found_minor = stored.partition(".")
    return found_major == str(major) and found_minor.isdigit() and int(found_minor) <= minor


def format_not_newer(stored: str, writer: str) -> bool:
    """Tell whether ``stored`` is of ``writer``'s major format and not of a newer minor."""
    if stored == writer:
        return True
    major, _, minor = writer.partition(".")
    return minor.isdigit() and format_at_most(stored, int(major), int(minor))


def format_major_of(stored: str) -> str:
    """The major part of a ``"<major>.<minor>"`` format."""
    return stored.partition(".")[0]


class Decoded(msgspec.Struct, frozen=True):
    """A decoded record with what a rewrite needs, and the stored bytes it came from.

    The stored bytes let the next decoding of the same task reuse what did not
    change: a core record with the same bytes decodes to the same values, and so
    do variables with the same bytes.
    """

    record: TaskRecord
    core_version: int
    created_at_ms: int
    format: str
    rewritable: bool
    """The stored format is not newer than this process's: it may rewrite the core."""
    data: bytes = b""
    """The stored core record ``record`` was decoded from."""
    variables_data: bytes = b"{}"
    """The stored variables ``record`` was decoded from."""
    updated_at_ms: int | None = None
    """The stored time of the last update ``record`` shows."""
    source: VersionedRecord | None = None
    """The backend's value ``record`` was decoded from, when there is one."""


def decode_record(
    stored: VersionedRecord, owner_id: str, task_id: str, known: Decoded | None = None
) -> Decoded:
    """Decode a stored task, its queue part included (see :func:`_decode_core_record`)."""
    decoded = _decode_core_record(stored, owner_id, task_id, known)
    job = stored.job
    if job is None:
        return decoded
    try:
        params = None if stored.params is None else _params_decoder.decode(stored.params)
    except (msgspec.DecodeError, ValueError) as exc:
        raise StorageCorrupted(f"stored job params do not decode: {exc}") from exc
    record = msgspec.structs.replace(
        decoded.record, params=params, job=job_info(job, time.time() * 1000)
    )
    return msgspec.structs.replace(decoded, record=record)


_params_decoder = msgspec.json.Decoder()


def _decode_core_record(
    stored: VersionedRecord, owner_id: str, task_id: str, known: Decoded | None = None
) -> Decoded:
    """Decode the stored task of ``owner_id`` with id ``task_id`` (which its key holds).

    ``known`` is an earlier decoding of the same task: the parts whose stored
    bytes are the same are taken from it rather than decoded again. Raises
    StorageCorrupted if it is not a task, UnsupportedFormat if it is of another
    major format.
    """
    fmt = stored.format
    if fmt == FORMAT:
        rewritable = True
    else:
        rewritable = format_at_most(fmt, FORMAT_MAJOR, FORMAT_MINOR)
        if not rewritable and format_major_of(fmt) != str(FORMAT_MAJOR):
            raise UnsupportedFormat(task_id, fmt, FORMAT)
    data = stored.data
    raw_variables = stored.variables
    updated = stored.updated_at_ms
    try:
        if known is not None and known.variables_data == raw_variables:
            variables = known.record.variables
        else:
            variables = {} if raw_variables == b"{}" else _variables_decoder.decode(raw_variables)
        if known is not None and known.data == data:
            old = known.record
            created = known.created_at_ms
            if updated == known.updated_at_ms:
                task = old.task
            else:
                task = msgspec.structs.replace(
                    old.task,
                    last_updated_at=(
                        old.task.created_at if updated is None else timestamp_from_ms(updated)
                    ),
                )
            record = TaskRecord(
                task=task,
                owner_id=owner_id,
                variables=variables,
                result=old.result,
                request_method=old.request_method,
                expires_at=old.expires_at,
                version=stored.version,
            )
            return Decoded(
                record,
                stored.core_version,
                created,
                fmt,
                rewritable,
                data,
                raw_variables,
                updated,
                stored,
            )
        core = _core_decoder.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise StorageCorrupted(f"stored task record does not decode: {exc}") from exc
    created = core.created_at_ms
    seconds, millis = divmod(created, 1000)
    created_stamp = _second_stamp(seconds) + _MILLIS_SUFFIX[millis]
    ttl = core.ttl_ms
    record = TaskRecord(
        task=Task(
            task_id=task_id,
            status=core.status,
            status_message=core.status_message,
            created_at=created_stamp,
            last_updated_at=created_stamp if updated is None else timestamp_from_ms(updated),
            ttl=ttl,
            poll_interval=core.poll_interval_ms,
        ),
        owner_id=owner_id,
        variables=variables,
        result=core.result,
        request_method=core.request_method,
        expires_at=None if ttl is None else datetime.fromtimestamp((created + ttl) / 1000, UTC),
        version=stored.version,
    )
    return Decoded(
        record, stored.core_version, created, fmt, rewritable, data, raw_variables, updated, stored
    )
