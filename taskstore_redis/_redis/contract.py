"""The contract between the Python code and the Lua scripts: reply codes and calls.

Every script that replies with a code takes it from one table,
``lua/includes/codes.lua``; :class:`Code` mirrors it. A code means the same in
every script. Every script has one builder here that lays out its KEYS and ARGV
by the names its header declares (``-- @key``, ``-- @arg``); the backend calls
scripts only through them. ``tests/test_lua_contract.py`` holds both together
with the Lua.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .._core.backend_types import (
    LOST_RETRY_MS,
    CoreWrite,
    Fence,
    LeaseRef,
    ListPosition,
    NewTask,
    TaskRemoval,
    VariableMerge,
)
from .._core.schedules import ScheduleFire, StoredSchedule
from . import scripts
from .keys import KeySchema, encode_id, encode_task_id
from .scripts import Script


class Code(IntEnum):
    """A script's reply code: the ``Code`` table of ``lua/includes/codes.lua``."""

    OK = 1
    """Applied (or, for a read, found)."""
    NOT_FOUND = 0
    """No such task."""
    CONFLICT = -1
    """The task is not as the caller read it (core version, format or record)."""
    LEASE_REFUSED = -2
    """The lease named does not hold; the reply says why."""
    TOO_LARGE = -3
    """The variables would outgrow their limit; the reply gives the size."""
    OTHER_FORMAT = -4
    """Stored in another major format; the reply gives it."""
    EXPIRED = -5
    """The task has expired."""
    EXISTS = -6
    """A task with this key exists already."""
    OVER_QUOTA = -7
    """The owner has as many live tasks as the quota allows."""
    DUPLICATE = -8
    """A live task holds the dedup key: nothing new was created; the reply names it."""
    NO_PARENT = -9
    """A parent named is no live queued task of the owner: nothing written; the reply names it."""
    PARENT_ENDED = -10
    """Created, and cancelled at once: a parent had ended without completing."""


PRUNE_BATCH = 8
"""Index entries of vanished tasks that one create prunes at most."""


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a script: its KEYS and ARGV, each by the name the script's header declares.

    ``rest`` is the name and values of a last argument that takes any number of
    values (``-- @arg name...``), or None.
    """

    script: Script
    keys: dict[str, str]
    args: dict[str, Any]
    rest: tuple[str, list[Any]] | None = None

    def keys_and_args(self) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV, in the order the script reads them."""
        args = list(self.args.values())
        if self.rest is not None:
            args += self.rest[1]
        return list(self.keys.values()), args

    def command(self) -> tuple[Any, ...]:
        """The EVALSHA command of this call, its arguments in the bytes redis-py would send.

        Encoded here, at once, rather than one by one in redis-py's encoder: keys (ASCII
        by the key schema), ints, and ASCII text (the same bytes in every encoding a
        client may be set to); anything else (non-ASCII text, floats, bytes) is left to
        the client as it was.
        """
        keys, args = self.keys_and_args()
        return (
            "EVALSHA",
            self.script.sha.encode(),
            b"%d" % len(keys),
            *[key.encode() for key in keys],
            *[
                b"%d" % value
                if value.__class__ is int
                else value.encode()
                if value.__class__ is str and value.isascii()
                else value
                for value in args
            ],
        )


def _queue_shard_keys(keys: KeySchema, queue: str, shard: int) -> dict[str, str]:
    ready, leased, counters = keys.queue_keys(queue, shard)
    return {"ready": ready, "leased": leased, "counters": counters}


def create_call(keys: KeySchema, task: NewTask, token: str) -> Call:
    """``create.lua`` for one task (with its queue part when it is submitted)."""
    key = task.key
    owner = key.owner_id
    shard = keys.shard_of(owner)
    names = {
        "task": keys.task_key(key),
        "index": keys.index_key(owner),
        "expiry": keys.expiry_key(owner),
        "due": keys.due_key(shard),
        "prefix": keys.task_prefix(owner),
    }
    args: dict[str, Any] = {
        "format": task.format,
        "data": task.data,
        "member": keys.index_member(key, task.created_at_ms),
        "expires_at": "" if task.expires_at_ms is None else task.expires_at_ms,
        "purge_at": "" if task.purge_at_ms is None else task.purge_at_ms,
        "quota": "" if task.max_live is None else task.max_live,
        "now": task.now_ms,
        "due_member": keys.due_member(owner),
        "prune_batch": PRUNE_BATCH,
        "token": token,
    }
    job = task.job
    if job is not None:
        ready, _, counters = keys.queue_keys(job.queue, shard)
        names |= {"ready": ready, "counters": counters, "queues": keys.queues_key(shard)}
        args |= {
            "queue": job.queue,
            "job": keys.queue_member(key),
            "params": job.params,
            "max_attempts": job.max_attempts,
            "delay_ms": job.delay_ms,
            "owner": owner,
            "priority": job.priority,
            "from": job.resubmitted_from or "",
            "dedup": "" if job.dedup_key is None else keys.dedup_key(job.queue, key, job.dedup_key),
            "debounce_ms": "" if job.debounce_ms is None else job.debounce_ms,
            "group": "" if job.group is None else keys.owner_part(job.group),
            "parents": " ".join(map(encode_task_id, job.after)),
            "parent_ids": "\n".join(job.after_texts),
            "run_anyway": "r" if job.run_anyway else "",
            "cancelled": job.cancelled,
        }
    return Call(scripts.CREATE, names, args)


def compare_and_set_call(keys: KeySchema, write: CoreWrite, token: str) -> Call:
    """``compare_and_set.lua`` (with its queue part when the task is queued or fenced)."""
    key = write.key
    major, _, minor = write.format.partition(".")
    names = {"task": keys.task_key(key), "expiry": keys.expiry_key(key.owner_id)}
    args: dict[str, Any] = {
        "expected": write.expected_core_version,
        "data": write.data,
        "token": token,
        "now": write.now_ms,
        "member": keys.index_member(key, write.created_at_ms) if write.terminal else "",
        "major": major,
        "minor": minor,
    }
    queue = write.queue if write.fence is None else write.fence.queue
    if queue is not None:
        names |= _queue_shard_keys(keys, queue, keys.shard_of(key.owner_id))
        fence = write.fence
        args |= {
            "fence": "" if fence is None else fence.token,
            "writer": "f" if fence is not None and fence.finalize else "h",
            "job": keys.queue_member(key),
            "queue": queue,
            "status": write.status,
        }
    return Call(scripts.COMPARE_AND_SET, names, args)


def merge_variables_call(keys: KeySchema, merge: VariableMerge, token: str) -> Call:
    """``merge_variables.lua``."""
    fence: Fence | None = merge.fence
    changes: list[Any] = [part for pair in merge.sets for part in pair]
    changes.extend(merge.deletes)
    return Call(
        scripts.MERGE_VARIABLES,
        {"task": keys.task_key(merge.key)},
        {
            "major": merge.format_major,
            "now": merge.now_ms,
            "max_bytes": merge.max_bytes,
            "token": token,
            "fence": "" if fence is None else fence.token,
            "queue": "" if fence is None else fence.queue,
            "sets": len(merge.sets),
        },
        ("changes", changes),
    )


def delete_call(keys: KeySchema, removal: TaskRemoval) -> Call:
    """``delete.lua``."""
    key = removal.key
    owner = key.owner_id
    return Call(
        scripts.DELETE,
        {
            "task": keys.task_key(key),
            "index": keys.index_key(owner),
            "expiry": keys.expiry_key(owner),
        },
        {
            "member": keys.index_member(key, removal.created_at_ms),
            "core_sha": hashlib.sha1(removal.data).hexdigest(),
        },
    )


def list_page_call(keys: KeySchema, owner_id: str, after: ListPosition | None, limit: int) -> Call:
    """``list_page.lua``: the page of ``limit`` tasks below ``after`` (None: the newest)."""
    return Call(
        scripts.LIST_PAGE,
        {"index": keys.index_key(owner_id), "prefix": keys.task_prefix(owner_id)},
        {
            "bound": "+" if after is None else "(" + keys.member_at(owner_id, after),
            "limit": limit,
            "budget": 4 * limit + 64,
        },
    )


def purge_expired_call(keys: KeySchema, shard: int, now_ms: int, batch: int) -> Call:
    """``purge_expired.lua`` on one shard."""
    return Call(
        scripts.PURGE_EXPIRED, {"due": keys.due_key(shard)}, {"now": now_ms, "batch": batch}
    )


def claim_call(
    keys: KeySchema,
    queue: str,
    shard: int,
    *,
    count: int,
    lease_ms: int,
    worker_id: str,
    batch: int,
) -> Call:
    """``claim.lua`` on one shard of a queue."""
    return Call(
        scripts.CLAIM,
        {**_queue_shard_keys(keys, queue, shard), "base": keys.task_base(shard)},
        {
            "count": count,
            "lease_ms": lease_ms,
            "worker": worker_id,
            "batch": batch,
            "retry_ms": LOST_RETRY_MS,
        },
    )


def complete_and_claim_call(
    keys: KeySchema,
    queue: str,
    shard: int,
    writes: list[tuple[CoreWrite, str]],
    *,
    count: int,
    lease_ms: int,
    worker_id: str,
    batch: int,
) -> Call:
    """``complete_and_claim.lua`` on one shard of a queue: fenced terminal writes, then a claim.

    ``writes`` are holders' terminal writes (each fenced on ``queue``, of a task of
    ``shard``, all in one format and made at one time), each with its write token.
    """
    rest: list[Any] = []
    now, major, minor = 0, "", ""
    for write, token in writes:
        key = write.key
        fence = write.fence
        if fence is None or fence.finalize or fence.queue != queue or not write.terminal:
            raise ValueError("complete_and_claim takes a lease holder's terminal writes only")
        if keys.shard_of(key.owner_id) != shard:
            raise ValueError(f"task {key.task_id!r} is not of shard {shard}")
        if not rest:
            now = write.now_ms
            major, _, minor = write.format.partition(".")
        elif (write.now_ms, write.format) != (now, f"{major}.{minor}"):
            raise ValueError("complete_and_claim takes writes of one format made at one time")
        rest += [
            keys.queue_member(key),
            keys.expiry_key(key.owner_id),
            write.expected_core_version,
            write.data,
            token,
            keys.index_member(key, write.created_at_ms),
            fence.token,
            write.status,
        ]
    return Call(
        scripts.COMPLETE_AND_CLAIM,
        {**_queue_shard_keys(keys, queue, shard), "base": keys.task_base(shard)},
        {
            "count": count,
            "lease_ms": lease_ms,
            "worker": worker_id,
            "batch": batch,
            "retry_ms": LOST_RETRY_MS,
            "queue": queue,
            "now": now,
            "major": major,
            "minor": minor,
        },
        ("writes", rest),
    )


def recover_call(keys: KeySchema, queue: str, shard: int, batch: int) -> Call:
    """``recover.lua`` on one shard of a queue."""
    return Call(
        scripts.RECOVER,
        {**_queue_shard_keys(keys, queue, shard), "base": keys.task_base(shard)},
        {"batch": batch, "retry_ms": LOST_RETRY_MS},
    )


def renew_call(
    keys: KeySchema, queue: str, shard: int, leases: list[LeaseRef], lease_ms: int
) -> Call:
    """``renew.lua`` for leases of one shard of a queue."""
    pairs: list[Any] = []
    for lease in leases:
        pairs += [keys.queue_member(lease.key), lease.token]
    return Call(
        scripts.RENEW,
        {"leased": keys.queue_key(queue, shard, "l"), "base": keys.task_base(shard)},
        {"lease_ms": lease_ms, "queue": queue},
        ("leases", pairs),
    )


def release_call(
    keys: KeySchema, lease: LeaseRef, delay_ms: int, token: str, *, count_attempt: bool
) -> Call:
    """``release.lua`` (``count_attempt`` False: the attempt is handed back too)."""
    shard = keys.shard_of(lease.key.owner_id)
    return Call(
        scripts.RELEASE,
        {**_queue_shard_keys(keys, lease.queue, shard), "task": keys.task_key(lease.key)},
        {
            "queue": lease.queue,
            "job": keys.queue_member(lease.key),
            "fence": lease.token,
            "delay_ms": delay_ms,
            "token": token,
            "give_back": 0 if count_attempt else 1,
        },
    )


def queue_stats_call(keys: KeySchema, queue: str, shard: int) -> Call:
    """``queue_stats.lua`` on one shard of a queue."""
    names = _queue_shard_keys(keys, queue, shard) | {"base": keys.task_base(shard)}
    return Call(scripts.QUEUE_STATS, names, {})


def queue_due_call(keys: KeySchema, queue: str, shard: int) -> Call:
    """``queue_due.lua`` on one shard of a queue."""
    return Call(scripts.QUEUE_DUE, _queue_shard_keys(keys, queue, shard), {})


def pause_call(keys: KeySchema, queue: str, shard: int, paused: bool) -> Call:
    """``pause.lua`` on one shard of a queue: pause it (``paused``) or resume it."""
    ready, _, counters = keys.queue_keys(queue, shard)
    return Call(
        scripts.PAUSE,
        {"ready": ready, "counters": counters, "queues": keys.queues_key(shard)},
        {"queue": queue, "paused": 1 if paused else 0},
    )


def queue_leases_call(keys: KeySchema, queue: str, shard: int, limit: int) -> Call:
    """``queue_leases.lua`` on one shard of a queue."""
    return Call(
        scripts.QUEUE_LEASES,
        {"leased": keys.queue_key(queue, shard, "l"), "base": keys.task_base(shard)},
        {"limit": limit},
    )


def limits_call(
    keys: KeySchema, queue: str, shard: int, group: str | None, limits: dict[str, float]
) -> Call:
    """``limits.lua`` on one shard of a queue, for the whole queue or for ``group``.

    ``limits`` by name (``c``, ``r``, ``b``); a name left out is removed.
    """
    ready, leased, _ = keys.queue_keys(queue, shard)
    return Call(
        scripts.LIMITS,
        {"ready": ready, "leased": leased, "base": keys.task_base(shard)},
        {
            "group": "" if group is None else keys.owner_part(group),
            "most": _limit(limits.get("c")),
            "rate": _limit(limits.get("r")),
            "burst": _limit(limits.get("b")),
        },
    )


def _limit(value: float | None) -> Any:
    if value is None:
        return ""
    return int(value) if float(value).is_integer() else repr(float(value))


def schedule_name_call(keys: KeySchema, name: str, owner_id: str, *, remove: bool) -> Call:
    """``schedule_name.lua``: claim the name for the owner, or give it up (``remove``)."""
    return Call(
        scripts.SCHEDULE_NAME,
        {"names": keys.schedule_names_key()},
        {"name": encode_id(name), "owner": owner_id, "remove": 1 if remove else 0},
    )


def schedule_call(keys: KeySchema, owner_id: str, name: str, spec: bytes, next_ms: int) -> Call:
    """``schedule.lua``: create or update the schedule ``name`` of ``owner_id``."""
    return Call(
        scripts.SCHEDULE,
        {
            "schedule": keys.schedule_key(owner_id, name),
            "schedules": keys.schedules_key(keys.shard_of(owner_id)),
        },
        {"name": encode_id(name), "spec": spec, "next": next_ms},
    )


def unschedule_call(keys: KeySchema, owner_id: str, name: str) -> Call:
    """``unschedule.lua``: delete the schedule ``name`` of ``owner_id``."""
    return Call(
        scripts.UNSCHEDULE,
        {
            "schedule": keys.schedule_key(owner_id, name),
            "schedules": keys.schedules_key(keys.shard_of(owner_id)),
        },
        {"name": encode_id(name)},
    )


def schedules_due_call(keys: KeySchema, shard: int, until_ms: float, limit: int) -> Call:
    """``schedules_due.lua`` on one shard: its schedules due by ``until_ms`` (``inf``: all)."""
    return Call(
        scripts.SCHEDULES_DUE,
        {"schedules": keys.schedules_key(shard), "base": keys.schedule_base(shard)},
        {"until": "+inf" if until_ms == float("inf") else int(until_ms), "limit": limit},
    )


def fire_call(
    keys: KeySchema,
    owner_id: str,
    stored: StoredSchedule,
    step: ScheduleFire,
    task: NewTask | None,
    token: str,
) -> Call:
    """``fire.lua``: one step of the schedule ``stored``, with the task to create, if any."""
    names = {
        "schedule": keys.schedule_key(owner_id, stored.name),
        "schedules": keys.schedules_key(keys.shard_of(owner_id)),
    }
    args: dict[str, Any] = {
        "name": encode_id(stored.name),
        "expected": stored.next_ms,
        "version": stored.version,
        "due_at": step.due_at_ms,
        "next": step.next_ms,
        "tick": "" if step.tick_ms is None else step.tick_ms,
    }
    if task is not None:
        if task.job is None or task.key.owner_id != owner_id:
            raise ValueError("a schedule fires a submitted task of its own owner")
        create = create_call(keys, task, token)
        names |= create.keys
        args |= create.args
    return Call(scripts.FIRE, names, args)


BUILDERS: dict[str, Callable[..., Call]] = {
    scripts.CREATE.name: create_call,
    scripts.COMPARE_AND_SET.name: compare_and_set_call,
    scripts.MERGE_VARIABLES.name: merge_variables_call,
    scripts.LIST_PAGE.name: list_page_call,
    scripts.PURGE_EXPIRED.name: purge_expired_call,
    scripts.CLAIM.name: claim_call,
    scripts.COMPLETE_AND_CLAIM.name: complete_and_claim_call,
    scripts.RECOVER.name: recover_call,
    scripts.RENEW.name: renew_call,
    scripts.RELEASE.name: release_call,
    scripts.QUEUE_STATS.name: queue_stats_call,
    scripts.QUEUE_DUE.name: queue_due_call,
    scripts.QUEUE_LEASES.name: queue_leases_call,
    scripts.PAUSE.name: pause_call,
    scripts.LIMITS.name: limits_call,
    scripts.DELETE.name: delete_call,
    scripts.SCHEDULE_NAME.name: schedule_name_call,
    scripts.SCHEDULE.name: schedule_call,
    scripts.UNSCHEDULE.name: unschedule_call,
    scripts.SCHEDULES_DUE.name: schedules_due_call,
    scripts.FIRE.name: fire_call,
}
"""The builder of every script, by the script's name."""
