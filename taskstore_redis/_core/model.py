"""The task model, its canonical JSON encoding and its decoding.

There is one encoder for the whole library, with a deterministic key order:
equal records encode to identical bytes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
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


class _Row(msgspec.Struct, frozen=True, array_like=True):
    """A task as the store decodes it: its variables, then the stored core record's elements.

    The stored core record is a JSON array, in the order of the fields after
    ``variables``, with trailing nulls left out; elements after the last known
    one are ignored when decoding, so a record written by a newer minor format
    (which may only append) still reads. The task id and the owner id are not
    stored in it: the task's key holds them. A row is the stored variables
    followed by the core record's elements (``[`` + variables + ``,`` + the core
    record after its ``[``), so that one decoding, of one task or of a whole
    list page, gives everything a ``TaskRecord`` needs.
    """

    variables: dict[str, Any]
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
    """``"ready"``, ``"delayed"`` (claimable at ``ready_at``), ``"waiting"`` (for its
    ``parents`` to complete), ``"leased"`` (a worker holds it until ``lease_expires_at``),
    ``"lost"`` (attempts used up; being failed) or ``"done"``."""
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
    priority: int = 0
    """0 to 9: higher is claimed first, oldest first within a priority."""
    resubmitted_from: str | None = None
    """The id of the failed or cancelled task this one was resubmitted from
    (``GenericTaskStore.resubmit``), or None."""
    group: str | None = None
    """The flow-control group its submit named (claims share fairly among groups);
    None: the owner's own."""
    parents: tuple[str, ...] = ()
    """The tasks it was submitted ``after`` (``GenericTaskStore.submit``)."""
    scheduled_for: datetime | None = None
    """For a task a schedule submitted: the tick it was submitted for (see
    ``GenericTaskStore.schedule``); None for any other task."""


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
    waiting: int = 0
    """Tasks waiting for their parents to complete (``submit`` with ``after``)."""
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
    paused: bool = False
    """The queue is paused (``pause_queue``): workers lease none of its tasks."""


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Flow-control limits of a queue or of one group on it (see ``set_limits``)."""

    max_concurrency: int | None = None
    """The most leases held at once (lost ones count until they are failed)."""
    per_second: float | None = None
    """The most claims per second: a token bucket on the server's clock."""
    burst: int | None = None
    """The bucket's size: claims that may go at once after a quiet spell (1 by default)."""


class QueueLimits(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's limits (see ``GenericTaskStore.limits``)."""

    queue: str
    limits: Limits
    """The whole queue's."""
    groups: dict[str, Limits]
    """Each group's that has any, by group."""


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A task a worker holds, as ``GenericTaskStore.queue_leases`` lists it."""

    task_id: str
    owner_id: str
    worker_id: str | None
    """The worker that claimed it (``worker_id`` of ``claim``)."""
    attempt: int
    expires_at: datetime
    """When the lease runs out unless renewed (the server's clock)."""
    lost: bool = False
    """The lease ran out on its last attempt: the task waits to be failed."""


_JOB_STATES = {"b": "waiting", "l": "leased", "x": "lost", "y": "lost", "d": "done"}


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
        priority=job.priority,
        resubmitted_from=job.resubmitted_from,
        group=job.group,
        parents=job.parents,
        scheduled_for=(
            None
            if job.scheduled_for_ms is None
            else datetime.fromtimestamp(job.scheduled_for_ms / 1000, UTC)
        ),
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
_row_decoder = msgspec.json.Decoder(_Row)
_page_decoder = msgspec.json.Decoder(list[_Row])
_variables_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_json(value: object) -> bytes:
    """Encode a value as canonical JSON (the library's one encoder)."""
    return _encoder.encode(value)


def encode_core(record: TaskRecord, created_at_ms: int) -> bytes:
    """Encode a record's core (all but its version and variables) as canonical JSON.

    The array of ``_Row``'s fields after ``variables``, in order, without its trailing nulls.
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


_PARENT_MARK = "\ue000"
"""Stands for a parent's id in the cancelled record made ahead (a private-use character)."""


def encode_cancelled_by_parent(record: TaskRecord, created_at_ms: int) -> bytes:
    """The core record a task waiting for parents takes when one ends without completing.

    Cancelled, with a status message naming the parent: a newline (which canonical JSON
    never holds raw) stands where the parent's id goes, as :func:`json_contents` spells it.
    """
    task = msgspec.structs.replace(
        record.task,
        status=TaskStatus.CANCELLED,
        status_message=f"parent task {_PARENT_MARK} ended without completing",
    )
    core = encode_core(msgspec.structs.replace(record, task=task), created_at_ms)
    return core.replace(_PARENT_MARK.encode(), b"\n")


def json_contents(text: str) -> str:
    """A string as the contents of its canonical JSON string (escaped, without the quotes)."""
    return _encoder.encode(text)[1:-1].decode()


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


class Decoded(msgspec.Struct, frozen=True, kw_only=True):
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


def _rewritable(fmt: str, task_id: str) -> bool:
    """Whether a task stored in format ``fmt`` may be rewritten; UnsupportedFormat if foreign."""
    if fmt == FORMAT:
        return True
    rewritable = format_at_most(fmt, FORMAT_MAJOR, FORMAT_MINOR)
    if not rewritable and format_major_of(fmt) != str(FORMAT_MAJOR):
        raise UnsupportedFormat(task_id, fmt, FORMAT)
    return rewritable


def _row_bytes(variables: bytes, data: bytes) -> bytes:
    """The row of a task: its variables, then the elements of its core record."""
    if data[:1] != b"[":
        raise ValueError("the core record is not a JSON array")
    return b"[" + variables + b"," + data[1:]


def _reused(
    stored: VersionedRecord,
    variables: dict[str, JSONValue],
    known: Decoded,
    rewritable: bool,
) -> Decoded:
    """A task whose core record has the bytes of ``known``'s: its core parts taken from it."""
    old = known.record
    updated = stored.updated_at_ms
    if updated == known.updated_at_ms:
        task = old.task
    else:
        task = msgspec.structs.replace(
            old.task,
            last_updated_at=old.task.created_at if updated is None else timestamp_from_ms(updated),
        )
    record = TaskRecord(
        task=task,
        owner_id=old.owner_id,
        variables=variables,
        result=old.result,
        request_method=old.request_method,
        expires_at=old.expires_at,
        version=stored.version,
    )
    return Decoded(
        record=record,
        core_version=stored.core_version,
        created_at_ms=known.created_at_ms,
        format=stored.format,
        rewritable=rewritable,
        data=stored.data,
        variables_data=stored.variables,
        updated_at_ms=updated,
        source=stored,
    )


def decode_record(
    stored: VersionedRecord, owner_id: str, task_id: str, known: Decoded | None = None
) -> Decoded:
    """Decode a stored task, its queue part included (see :func:`_decode_core_record`)."""
    return _with_job(_decode_core_record(stored, owner_id, task_id, known), stored)


def _with_job(decoded: Decoded, stored: VersionedRecord) -> Decoded:
    """``decoded`` with the queue part of ``stored`` (its params and job state), if any."""
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
    rewritable = _rewritable(stored.format, task_id)
    raw_variables = stored.variables
    same_variables = known is not None and known.variables_data == raw_variables
    try:
        if known is not None and known.data == stored.data:
            if same_variables:
                variables = known.record.variables
            elif raw_variables == b"{}":
                variables = {}
            else:
                variables = _variables_decoder.decode(raw_variables)
            return _reused(stored, variables, known, rewritable)
        row = _row_decoder.decode(
            _row_bytes(b"{}" if same_variables else raw_variables, stored.data)
        )
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        raise StorageCorrupted(f"stored task record does not decode: {exc}") from exc
    return _assemble([stored], owner_id, task_id, [known], [row], [rewritable])[0]


def decode_page(
    page: Sequence[VersionedRecord], owner_id: str, known: Sequence[Decoded | None]
) -> list[Decoded]:
    """Decode the stored tasks of one list page of ``owner_id`` in one pass.

    ``page`` holds each task's id (``task_id``), ``known`` an earlier decoding
    of each task or None. The rows of all the tasks are joined into one JSON
    array and decoded at once; what ``known`` already holds is taken from it as
    ``decode_record`` does. Raises what ``decode_record`` raises for the first
    task that does not decode.
    """
    rows: list[bytes] = []
    rewritable: list[bool] = []
    decoded_rows: list[_Row] = []
    try:
        for stored in page:
            fmt = stored.format
            rewritable.append(fmt == FORMAT or _rewritable(fmt, stored.task_id))
            data = stored.data
            if data[:1] == b"[":
                rows.append(b"[" + stored.variables + b"," + data[1:])
        if len(rows) == len(page):
            decoded_rows = _page_decoder.decode(b"[" + b",".join(rows) + b"]")
    except (msgspec.DecodeError, UnsupportedFormat):
        pass
    if len(decoded_rows) != len(page):
        # a task does not decode (or the joined rows do not align): task by task, so
        # that the first bad one raises as decode_record says
        return [
            decode_record(stored, owner_id, stored.task_id, earlier)
            for stored, earlier in zip(page, known, strict=True)
        ]
    decoded = _assemble(page, owner_id, None, known, decoded_rows, rewritable)
    return [_with_job(one, stored) for one, stored in zip(decoded, page, strict=True)]


def _assemble(
    page: Sequence[VersionedRecord],
    owner_id: str,
    task_id: str | None,
    known: Sequence[Decoded | None],
    rows: Sequence[_Row],
    rewritable: Sequence[bool],
) -> list[Decoded]:
    """The decoded tasks of ``page`` from their rows, with what ``known`` holds reused.

    ``task_id`` is the id of a single task, None to take each from its stored value.
    """
    out: list[Decoded] = []
    append = out.append
    for stored, earlier, row, may_rewrite in zip(page, known, rows, rewritable, strict=True):
        variables = row.variables
        if earlier is not None:
            if earlier.variables_data == stored.variables:
                variables = earlier.record.variables
            if earlier.data == stored.data:
                append(_reused(stored, variables, earlier, may_rewrite))
                continue
        created = row.created_at_ms
        seconds, millis = divmod(created, 1000)
        created_stamp = _second_stamp(seconds) + _MILLIS_SUFFIX[millis]
        updated = stored.updated_at_ms
        if updated is None:
            updated_stamp = created_stamp
        else:
            seconds, millis = divmod(updated, 1000)
            updated_stamp = _second_stamp(seconds) + _MILLIS_SUFFIX[millis]
        ttl = row.ttl_ms
        record = TaskRecord(
            task=Task(
                task_id=stored.task_id if task_id is None else task_id,
                status=row.status,
                status_message=row.status_message,
                created_at=created_stamp,
                last_updated_at=updated_stamp,
                ttl=ttl,
                poll_interval=row.poll_interval_ms,
            ),
            owner_id=owner_id,
            variables=variables,
            result=row.result,
            request_method=row.request_method,
            expires_at=None if ttl is None else datetime.fromtimestamp((created + ttl) / 1000, UTC),
            version=stored.version,
        )
        append(
            Decoded(
                record=record,
                core_version=stored.core_version,
                created_at_ms=created,
                format=stored.format,
                rewritable=may_rewrite,
                data=stored.data,
                variables_data=stored.variables,
                updated_at_ms=updated,
                source=stored,
            )
        )
    return out
