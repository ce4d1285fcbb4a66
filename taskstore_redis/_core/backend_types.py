"""The values a storage backend takes and returns.

A backend is a versioned key-value store with no domain rules: it never parses
the JSON it stores and never judges a transition. These types are shared by the
async and the sync backends.
"""

from __future__ import annotations

import enum

import msgspec


class StoredJob(msgspec.Struct, frozen=True, kw_only=True):
    """The queue state a backend keeps next to a submitted task (never parsed JSON)."""

    queue: str
    state: str
    """``"r"`` queued (ready or delayed), ``"b"`` waiting for its parents, ``"l"`` leased,
    ``"x"`` lost for good after an expired lease, ``"y"`` released after its last attempt,
    ``"d"`` done."""
    attempt: int
    """Claims so far."""
    max_attempts: int
    token: int
    """The fencing token of the latest claim (0 before the first)."""
    worker_id: str | None = None
    lease_deadline_ms: float | None = None
    """When the current lease runs out, by the backend's clock."""
    ready_at_ms: float | None = None
    """When the task became (or becomes) claimable, by the backend's clock."""
    ended: str = ""
    """The terminal status the task ended in (kept apart from the core record)."""
    priority: int = 0
    """0 to 9: higher is claimed first."""
    resubmitted_from: str | None = None
    """The id of the task this one was resubmitted from (``resubmit``)."""
    group: str | None = None
    """The flow-control group its submit named; None: its owner."""
    parents: tuple[str, ...] = ()
    """The ids of the tasks it was submitted after (of the same owner)."""
    scheduled_for_ms: int | None = None
    """The tick of the schedule that submitted it, or None."""


LOST_RETRY_MS = 2000
"""A task whose attempts are used up is handed to claimers and sweeps for failing at most
this often, until one of them has failed it."""


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
    params: bytes | None = None
    """A submitted task's job input, canonical JSON, as the store encoded it."""
    job: StoredJob | None = None
    """A submitted task's queue state; None for a task made by ``create``."""


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
    CANCELLED = "cancelled"
    """Created, and cancelled at once: a parent (``NewJob.after``) had already ended
    without completing."""


class MissingParent(msgspec.Struct, frozen=True):
    """What ``create`` replies when a parent named is no live queued task of the owner."""

    task_id: str
    """The first such parent; nothing was written."""


class Duplicate(msgspec.Struct, frozen=True, kw_only=True):
    """What ``create`` did instead when a live task holds the job's dedup key."""

    task_id: str
    """The task holding the key, of the same owner: nothing new was created."""
    debounced: bool
    """It took the new params and was pushed ``debounce_ms`` from now."""


Created = CreateOutcome | Duplicate | MissingParent
"""What ``StorageBackend.create`` replies."""


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
    job: NewJob | None = None
    """Enqueue the task in the same atomic step (``submit``); None for a plain task."""


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """The queue part of a submitted task."""

    queue: str
    params: bytes
    """The job input, canonical JSON."""
    max_attempts: int
    delay_ms: int
    """Claimable this long after the backend's clock at submission."""
    priority: int = 0
    """0 to 9: higher is claimed first, oldest first within a priority."""
    resubmitted_from: str | None = None
    """The id of the task this one is resubmitted from (``resubmit``), or None."""
    dedup_key: str | None = None
    """While a live task of the owner on this queue holds this key, create nothing."""
    debounce_ms: int | None = None
    """With ``dedup_key``: a holder not yet leased takes these params instead and is
    ready this long from now (``Duplicate.debounced``)."""
    group: str | None = None
    """The flow-control group claims share fairly among (None: the owner)."""
    after: tuple[str, ...] = ()
    """The ids of queued tasks of the same owner it waits for: it joins the queue once they
    have all completed."""
    run_anyway: bool = False
    """Join the queue once the parents have ended however they ended; else (False) a
    parent that fails or is cancelled cancels this task (and those that wait for it)."""
    after_texts: tuple[str, ...] = ()
    """Each of ``after`` as the contents of a JSON string (canonical, without the quotes)."""
    cancelled: bytes = b""
    """With ``after``: the core record the task takes when a parent cancels it, with a
    newline where that parent's ``after_texts`` entry goes."""
    scheduled_for_ms: int | None = None
    """The tick of the schedule that submits it (``job.scheduled_for``), or None."""


class Fence(msgspec.Struct, frozen=True, kw_only=True):
    """A lease holder's claim on a write: it applies only while the lease is still the holder's.

    With ``finalize`` it is instead the store's own write that fails a task whose
    leases were lost for good: it applies only while the task is still in that
    state with that token.
    """

    queue: str
    token: int
    finalize: bool = False


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
    fence: Fence | None = None
    """Write only while this lease holds (see :class:`Fence`)."""
    queue: str | None = None
    """The task's queue, if it was submitted: a terminal write also takes it off the queue."""
    status: str = ""
    """The new status (the backend keeps a terminal one apart, for the queue's fences)."""


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
    fence: Fence | None = None
    """Merge only while this lease holds (see :class:`Fence`)."""


class CasResult(msgspec.Struct, frozen=True):
    """What ``StorageBackend.compare_and_set`` did.

    ``current`` holds the record as it is now: after the write when ``applied``,
    the conflicting record otherwise (None when the task is gone), so the caller
    can retry without another read.
    """

    applied: bool
    current: VersionedRecord | None = None
    lease_lost: str = ""
    """Set when a fenced write was refused: why (a ``LeaseLost`` reason, or ``"forged"``)."""


class MergeOutcome(enum.Enum):
    """What ``StorageBackend.merge_variables`` did."""

    APPLIED = "applied"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    TOO_LARGE = "too_large"
    OTHER_FORMAT = "other_format"
    LEASE_LOST = "lease_lost"


class MergeResult(msgspec.Struct, frozen=True):
    """The outcome of a merge, the record after it, the refused size or stored format."""

    outcome: MergeOutcome
    current: VersionedRecord | None = None
    size: int = 0
    format: str = ""
    lease_lost: str = ""
    """With ``LEASE_LOST``: why (a ``LeaseLost`` reason, or ``"forged"``)."""


class BackendPage(msgspec.Struct, frozen=True):
    """Records of one list page, newest first, and where the next page starts."""

    records: list[VersionedRecord]
    next_position: ListPosition | None


class ClaimedJob(msgspec.Struct, frozen=True, kw_only=True):
    """One task a claim leased: the record after the claim and the lease's terms."""

    key: TaskKey
    record: VersionedRecord
    token: int
    attempt: int
    deadline_ms: float


class LostJob(msgspec.Struct, frozen=True, kw_only=True):
    """A task whose attempts are used up; the store fails it (a fenced finalize write)."""

    key: TaskKey
    token: int
    attempt: int
    max_attempts: int
    expired: bool
    """True: its last lease expired (the worker was lost); False: it was released."""


class ClaimReply(msgspec.Struct, frozen=True, kw_only=True):
    """What one claim step on one shard of a queue did."""

    claimed: list[ClaimedJob]
    lost: list[LostJob]
    next_due_in_ms: float | None
    """How long until this shard next needs a visit (a delayed task gets ready, a lease
    runs out), by the backend's clock; None when it holds nothing."""
    recovered: int = 0


class LeaseRef(msgspec.Struct, frozen=True):
    """A lease as a backend sees it: the task, its queue and the fencing token."""

    key: TaskKey
    queue: str
    token: int


class RenewOutcome(msgspec.Struct, frozen=True):
    """One lease's renewal: the new deadline, or why it was refused."""

    deadline_ms: float | None
    lease_lost: str = ""


class LeasedJob(msgspec.Struct, frozen=True, kw_only=True):
    """A task in a queue's leased set, as ``QueueBackend.queue_leases`` lists it."""

    key: TaskKey
    worker_id: str
    attempt: int
    deadline_ms: float
    """When the lease runs out unless renewed, by the backend's clock."""
    lost: bool = False
    """Its attempts are used up after a lost lease: it waits to be failed."""


class QueueCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's numbers on one shard (or summed over all)."""

    ready: int = 0
    delayed: int = 0
    leased: int = 0
    oldest_ready_age_ms: float | None = None
    counters: dict[str, int] = msgspec.field(default_factory=dict)
    waiting: int = 0
    """Tasks waiting for their parents (``submit`` with ``after``)."""


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


# the value types a backend takes and returns, public in ``taskstore_redis.backend``
# (``LOST_RETRY_MS`` is the backends' own)
__all__ = [
    "BackendPage",
    "CasResult",
    "ClaimReply",
    "ClaimedJob",
    "CoreWrite",
    "CreateOutcome",
    "DeleteOutcome",
    "Duplicate",
    "Fence",
    "LeaseRef",
    "LeasedJob",
    "ListPosition",
    "LostJob",
    "MergeOutcome",
    "MergeResult",
    "NewJob",
    "NewTask",
    "QueueCounts",
    "RenewOutcome",
    "StoredJob",
    "TaskKey",
    "TaskRemoval",
    "VariableMerge",
    "VersionedRecord",
]
