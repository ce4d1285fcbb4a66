"""The contract between the Python code and the Lua scripts: reply codes and calls.

Every script that replies with a code takes it from one table,
``lua/includes/codes.lua``; :class:`Code` mirrors it (``tests/test_lua_contract.py``
holds the two together). A code means the same in every script.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import Any

from .._core.backend_types import CoreWrite, Fence, NewTask, TaskRemoval, VariableMerge
from .keys import KeySchema


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


PRUNE_BATCH = 8
"""Index entries of vanished tasks that one create prunes at most."""


def create_call(keys: KeySchema, task: NewTask, token: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``create.lua`` for one task: the only place that lays them out."""
    key = task.key
    owner = key.owner_id
    shard = keys.shard_of(owner)
    names = [
        keys.task_key(key),
        keys.index_key(owner),
        keys.expiry_key(owner),
        keys.due_key(shard),
        keys.task_prefix(owner),
    ]
    job = task.job
    queue_args: list[Any] = []
    if job is not None:
        ready, _, stats = keys.queue_keys(job.queue, shard)
        names += [ready, stats, keys.queues_key(shard)]
        queue_args = [
            job.queue,
            keys.queue_member(key),
            job.params,
            job.max_attempts,
            job.delay_ms,
            owner,
        ]
    return (
        names,
        [
            task.format,
            task.data,
            keys.index_member(key, task.created_at_ms),
            "" if task.expires_at_ms is None else task.expires_at_ms,
            "" if task.purge_at_ms is None else task.purge_at_ms,
            "" if task.max_live is None else task.max_live,
            task.now_ms,
            keys.due_member(owner),
            PRUNE_BATCH,
            token,
            *queue_args,
        ],
    )


def compare_and_set_call(
    keys: KeySchema, write: CoreWrite, token: str
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``compare_and_set.lua``."""
    key = write.key
    major, _, minor = write.format.partition(".")
    names = [keys.task_key(key), keys.expiry_key(key.owner_id)]
    args: list[Any] = [
        write.expected_core_version,
        write.data,
        token,
        write.now_ms,
        keys.index_member(key, write.created_at_ms) if write.terminal else "",
        major,
        minor,
    ]
    queue = write.queue if write.fence is None else write.fence.queue
    if queue is not None:
        names += keys.queue_keys(queue, keys.shard_of(key.owner_id))
        fence = write.fence
        args += [
            "" if fence is None else fence.token,
            "f" if fence is not None and fence.finalize else "h",
            keys.queue_member(key),
            queue,
            write.status,
        ]
    return names, args


def merge_variables_call(
    keys: KeySchema, merge: VariableMerge, token: str
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``merge_variables.lua``."""
    fence: Fence | None = merge.fence
    args: list[Any] = [
        merge.format_major,
        merge.now_ms,
        merge.max_bytes,
        token,
        "" if fence is None else fence.token,
        "" if fence is None else fence.queue,
        len(merge.sets),
    ]
    for name, value in merge.sets:
        args.append(name)
        args.append(value)
    args.extend(merge.deletes)
    return [keys.task_key(merge.key)], args


def delete_call(keys: KeySchema, removal: TaskRemoval) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``delete.lua``."""
    key = removal.key
    owner = key.owner_id
    return (
        [keys.task_key(key), keys.index_key(owner), keys.expiry_key(owner)],
        [
            keys.index_member(key, removal.created_at_ms),
            hashlib.sha1(removal.data).hexdigest(),
        ],
    )
