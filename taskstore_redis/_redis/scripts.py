"""The Lua scripts, read from the ``lua/`` folder that ships inside the package."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .._core.backend_types import CoreWrite, Fence, NewTask, TaskRemoval, VariableMerge
from .keys import KeySchema

PRUNE_BATCH = 8
"""Index entries of vanished tasks that one create prunes at most."""


@dataclass(frozen=True)
class Script:
    """One server-side script: its name, Lua source and SHA-1 (what EVALSHA takes)."""

    name: str
    source: str
    sha: str


def _lua_dir() -> Path:
    packaged = resources.files("taskstore_redis").joinpath("lua")
    if packaged.is_dir():
        return Path(str(packaged))
    # a source checkout: the scripts live at the top of the repository
    return Path(__file__).resolve().parents[2] / "lua"


SHARED = "_task"
"""``lua/_task.lua``: the helpers every script gets, after its first (``#!lua``) line."""


def shared_source() -> str:
    """The Lua of the shared helpers (``lua/_task.lua``) that every script starts with."""
    return (_lua_dir() / f"{SHARED}.lua").read_text(encoding="utf-8")


def load_script(name: str) -> Script:
    """Read ``lua/<name>.lua``, with the shared helpers after its first line."""
    own = (_lua_dir() / f"{name}.lua").read_text(encoding="utf-8")
    flags, _, body = own.partition("\n")
    source = f"{flags}\n{shared_source()}{body}"
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


CREATE = load_script("create")
COMPARE_AND_SET = load_script("compare_and_set")
MERGE_VARIABLES = load_script("merge_variables")
LIST_PAGE = load_script("list_page")
PURGE_EXPIRED = load_script("purge_expired")
CLAIM = load_script("claim")
RECOVER = load_script("recover")
RENEW = load_script("renew")
RELEASE = load_script("release")
QUEUE_STATS = load_script("queue_stats")
QUEUE_DUE = load_script("queue_due")
QUEUE_LEASES = load_script("queue_leases")
DELETE = load_script("delete")
ALL_SCRIPTS = (
    CREATE,
    COMPARE_AND_SET,
    MERGE_VARIABLES,
    LIST_PAGE,
    PURGE_EXPIRED,
    CLAIM,
    RECOVER,
    RENEW,
    RELEASE,
    QUEUE_STATS,
    QUEUE_DUE,
    QUEUE_LEASES,
    DELETE,
)


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
