"""Decoding the replies of Redis into the backend's values, shared by the async and sync backends.

A task comes back either from ``HGETALL`` (every field), from a script's
``record()`` (the core fields, and the variables already joined as
``"k1":v1,"k2":v2``), or from a list page in fixed places; each becomes one
:class:`VersionedRecord`.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from .._core.backend_types import (
    CasResult,
    ClaimedJob,
    ClaimReply,
    Created,
    CreateOutcome,
    DeleteOutcome,
    Duplicate,
    LostJob,
    MergeOutcome,
    MergeResult,
    MissingParent,
    RenewOutcome,
    StoredJob,
    TaskKey,
    VersionedRecord,
)
from .._core.schedules import StoredSchedule
from .contract import Code
from .keys import KeySchema, decode_id, decode_task_id


def created(reply: Any) -> bool:
    """Whether a create script's reply says it wrote (created, or debounced a duplicate)."""
    if isinstance(reply, list):
        return int(reply[2]) == 1
    return Code(int(reply)) is Code.OK


def wrote(reply: Any) -> bool:
    """Whether a compare-and-set, merge or release script's reply says it wrote."""
    return Code(int(reply[0])) is Code.OK


_CREATE_OUTCOMES = {
    Code.OK: CreateOutcome.CREATED,
    Code.OVER_QUOTA: CreateOutcome.QUOTA_EXCEEDED,
    Code.EXISTS: CreateOutcome.ALREADY_EXISTS,
    Code.PARENT_ENDED: CreateOutcome.CANCELLED,
}
_DELETE_OUTCOMES = {
    Code.OK: DeleteOutcome.DELETED,
    Code.NOT_FOUND: DeleteOutcome.NOT_FOUND,
    Code.CONFLICT: DeleteOutcome.CHANGED,
}


def create_outcome(reply: Any) -> CreateOutcome | Duplicate | MissingParent:
    """A ``create.lua`` reply."""
    if isinstance(reply, list) and Code(int(reply[0])) is Code.NO_PARENT:  # {NO_PARENT, id}
        return MissingParent(decode_task_id(as_str(reply[1])))
    if isinstance(reply, list):  # {DUPLICATE, encoded id, debounced}
        return Duplicate(task_id=decode_task_id(as_str(reply[1])), debounced=int(reply[2]) == 1)
    return _CREATE_OUTCOMES[Code(int(reply))]


def delete_outcome(reply: Any) -> DeleteOutcome:
    """A ``delete.lua`` reply."""
    return _DELETE_OUTCOMES[Code(int(reply))]


def cas_result(reply: Any) -> CasResult:
    """A ``compare_and_set.lua`` reply."""
    code = Code(int(reply[0]))
    if code is Code.OK:
        return CasResult(True, record_of_script(reply[1], reply[2]))
    if code is Code.NOT_FOUND:
        return CasResult(False, None)
    if code is Code.CONFLICT:
        return CasResult(False, record_of_script(reply[1], reply[2]))
    if code is Code.LEASE_REFUSED:
        return CasResult(False, record_of_script(reply[2], reply[3]), lease_lost=as_str(reply[1]))
    raise ValueError(f"compare_and_set.lua replied {code!r}")


def merge_result(reply: Any) -> MergeResult:
    """A ``merge_variables.lua`` reply."""
    code = Code(int(reply[0]))
    if code is Code.OK:
        return MergeResult(MergeOutcome.APPLIED, record_of_script(reply[1], reply[2]))
    if code is Code.NOT_FOUND:
        return MergeResult(MergeOutcome.NOT_FOUND)
    if code is Code.EXPIRED:
        return MergeResult(MergeOutcome.EXPIRED)
    if code is Code.TOO_LARGE:
        return MergeResult(MergeOutcome.TOO_LARGE, size=int(reply[1]))
    if code is Code.LEASE_REFUSED:
        return MergeResult(MergeOutcome.LEASE_LOST, lease_lost=as_str(reply[1]))
    if code is Code.OTHER_FORMAT:
        return MergeResult(MergeOutcome.OTHER_FORMAT, format=as_str(reply[1]))
    raise ValueError(f"merge_variables.lua replied {code!r}")


def release_reply(reply: Any) -> tuple[str, VersionedRecord | None]:
    """A ``release.lua`` reply: ("", the task after) or (why the lease does not hold, None)."""
    if Code(int(reply[0])) is Code.OK:
        return "", record_of_script(reply[1], reply[2])
    return as_str(reply[1]), None


def renew_outcome(reply: Any) -> RenewOutcome:
    """One lease's part of a ``renew.lua`` reply."""
    code, value = reply
    text = as_str(value)
    return RenewOutcome(float(text)) if Code(int(code)) is Code.OK else RenewOutcome(None, text)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def as_str(value: bytes | str) -> str:
    """A reply's text as str."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _record(flat: list[Any], joined: bytes | str | None = None) -> VersionedRecord | None:
    """Assemble a stored task from its hash fields, a flat list of names and values.

    None if it has none. Fields whose name starts with a double quote are
    variables (the name is the key's JSON, the value the value's JSON), unless a
    script has already joined them (``joined``, as ``key:value,key:value``);
    unknown fields are ignored. One pass over the fields.
    """
    if len(flat) % 2:
        raise ValueError("a hash reply has an odd number of elements")
    version = core_version = updated = None
    data: bytes | None = None
    fmt = ""
    members: list[bytes] = []
    job: dict[bytes, bytes] | None = None
    if joined:
        members.append(_as_bytes(joined))
    for at in range(0, len(flat), 2):
        name = flat[at]
        value = flat[at + 1]
        if type(name) is not bytes:
            name = _as_bytes(name)
        if type(value) is not bytes:
            value = _as_bytes(value)
        if name == b"d":
            data = value
        elif name[:1] == b'"':
            members.append(name + b":" + value)
        elif name == b"v":
            version = int(value)
        elif name == b"k":
            core_version = int(value)
        elif name == b"u":
            updated = int(value)
        elif name == b"f":
            fmt = value.decode("ascii", "replace")
        elif name[:1] == b"q" or name in _JOB_FIELDS:
            if job is None:
                job = {}
            job[name] = value
    if version is None or data is None:
        return None
    record = VersionedRecord(
        version=version,
        core_version=0 if core_version is None else core_version,
        data=data,
        variables=b"{" + b",".join(members) + b"}" if members else b"{}",
        updated_at_ms=updated,
        format=fmt,
    )
    return record if job is None else _with_job(record, job)


def record_of_script(core: list[Any], joined: bytes | str) -> VersionedRecord | None:
    """A task as the scripts' ``record()`` returns it: its core fields, its variables joined."""
    return _record(core, joined)


_PAGE_PLACES = 8
"""Elements of one task in a list page reply (see ``lua/list_page.lua``)."""


@functools.lru_cache(maxsize=4096)
def _task_id_of(spelled: bytes | str) -> str:
    """A task id from its spelling in a key, remembered: pages show the same tasks again."""
    return decode_task_id(as_str(spelled))


@functools.lru_cache(maxsize=16)
def _format_of(stored: bytes | str) -> str:
    return stored if isinstance(stored, str) else stored.decode("ascii", "replace")


def page_records(found: list[Any]) -> list[VersionedRecord]:
    """The tasks of a list page reply, in its order, without the next position.

    Each task is in eight places: version, core version, last update time,
    format, core record (each None when its field is missing), variables joined
    as ``key:value,key:value``, id as its key spells it, and its queue fields as
    a flat name, value list (empty unless it was submitted). A hash without a
    version or a core record is not a task and is left out.
    """
    if len(found) % _PAGE_PLACES:
        raise ValueError("a list page reply has a partial task")
    records: list[VersionedRecord] = []
    append = records.append
    for at in range(0, len(found), _PAGE_PLACES):
        version, core_version, updated, fmt, data, joined, spelled, queued = found[
            at : at + _PAGE_PLACES
        ]
        if version is None or data is None:
            continue
        record = VersionedRecord(
            version=int(version),
            core_version=0 if core_version is None else int(core_version),
            data=data if type(data) is bytes else _as_bytes(data),
            variables=b"{" + _as_bytes(joined) + b"}" if joined else b"{}",
            updated_at_ms=None if updated is None else int(updated),
            format="" if fmt is None else _format_of(fmt),
            task_id=_task_id_of(spelled),
        )
        if queued:
            record = _with_job(record, _fields(queued))
        append(record)
    return records


def _fields(flat: list[Any]) -> dict[bytes, bytes]:
    """A flat name, value list as a dict of bytes."""
    return {_as_bytes(flat[at]): _as_bytes(flat[at + 1]) for at in range(0, len(flat), 2)}


def record_of_hash(reply: Any) -> VersionedRecord | None:
    """A task from an HGETALL reply (a dict, or a flat list on RESP2 without callbacks)."""
    if isinstance(reply, dict):
        return _record([part for pair in reply.items() for part in pair])
    return _record(reply)


_JOB_FIELDS = (b"p", b"z")
"""Fields of a queued task's hash outside the ``q`` family: its params, its terminal marker."""


def _with_job(record: VersionedRecord, fields: dict[bytes, bytes]) -> VersionedRecord:
    """Attach the queue state kept in a task's ``q*`` (and ``p``, ``z``) fields."""
    queue = fields.get(b"q")
    if queue is None:
        return record
    deadline = fields.get(b"qx")
    ready_at = fields.get(b"qr")
    worker = fields.get(b"qw")
    state = fields.get(b"qs", b"r")
    ended = fields.get(b"z", b"")
    origin = fields.get(b"qf")
    group = fields.get(b"qg")
    parents = fields.get(b"qe")
    tick = fields.get(b"qd")
    # as_str, written out: this runs for every claimed and every written queued task
    job = StoredJob(
        queue=str(queue, "utf-8", "surrogatepass") if isinstance(queue, bytes) else queue,
        state=str(state, "utf-8", "surrogatepass") if isinstance(state, bytes) else state,
        attempt=int(fields.get(b"qa", b"0")),
        max_attempts=int(fields.get(b"qm", b"1")),
        token=int(fields.get(b"qt", b"0")),
        worker_id=(str(worker, "utf-8", "surrogatepass") if isinstance(worker, bytes) else worker),
        lease_deadline_ms=None if deadline is None else float(deadline),
        ready_at_ms=None if ready_at is None else float(ready_at),
        ended=str(ended, "utf-8", "surrogatepass") if isinstance(ended, bytes) else ended,
        priority=int(fields.get(b"qp", b"0")),
        resubmitted_from=None if origin is None else as_str(origin),
        group=None if group is None else decode_id(as_str(group)),
        parents=() if parents is None else tuple(map(decode_task_id, as_str(parents).split())),
        scheduled_for_ms=None if tick is None else int(tick),
    )
    return msgspec.structs.replace(record, job=job, params=fields.get(b"p"))


def claim_reply(reply: Any) -> ClaimReply:
    """A ``claim.lua`` or ``recover.lua`` reply."""
    claimed_part, lost_part, due, recovered = reply
    claimed = []
    for member, token, attempt, deadline, core, joined, owner in claimed_part:
        key = TaskKey(as_str(owner), KeySchema.task_id_of_member(as_str(member)))
        record = record_of_script(core, joined)
        if record is None:
            continue
        claimed.append(
            ClaimedJob(
                key=key,
                record=record,
                token=int(token),
                attempt=int(attempt),
                deadline_ms=float(deadline),
            )
        )
    lost = [
        LostJob(
            key=TaskKey(as_str(owner), KeySchema.task_id_of_member(as_str(member))),
            token=int(token),
            attempt=int(attempt),
            max_attempts=int(maximum),
            expired=bool(int(expired)),
        )
        for member, token, attempt, maximum, expired, owner in lost_part
    ]
    due_text = as_str(due)
    return ClaimReply(
        claimed=claimed,
        lost=lost,
        next_due_in_ms=float(due_text) if due_text else None,
        recovered=int(recovered),
    )


def complete_and_claim_reply(reply: Any) -> tuple[list[CasResult], ClaimReply]:
    """A ``complete_and_claim.lua`` reply: one outcome per completion, and the claim's.

    An applied completion's outcome carries no record (``current`` None).
    """
    applied = CasResult(True)
    outcomes = [
        applied if len(part) == 1 and int(part[0]) == Code.OK else cas_result(part)
        for part in reply[0]
    ]
    return outcomes, claim_reply(reply[1:])


def stored_schedule(name: str, flat: Any) -> StoredSchedule | None:
    """A schedule hash (as HGETALL, flat or a dict) named ``name``; None if it is gone."""
    pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
    fields = {as_str(field): value for field, value in pairs}
    spec = fields.get("s")
    if spec is None or "n" not in fields:
        return None
    last = fields.get("l")
    task = fields.get("t")
    return StoredSchedule(
        name=name,
        spec=spec if isinstance(spec, bytes) else as_str(spec).encode(),
        next_ms=int(float(as_str(fields["n"]))),
        version=int(fields.get("v", 0)),
        last_ms=None if last is None else int(last),
        last_task_id=None if task is None else decode_task_id(as_str(task)),
    )


def fire_outcome(reply: Any) -> Created | None:
    """A ``fire.lua`` reply."""
    if not isinstance(reply, list):  # CONFLICT
        return None
    return create_outcome(reply[1])
