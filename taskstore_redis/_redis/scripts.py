"""The Lua scripts, read from the ``lua/`` folder that ships inside the package."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .._core.backend_types import TaskKey
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


def load_script(name: str) -> Script:
    """Read ``lua/<name>.lua``."""
    source = (_lua_dir() / f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


CREATE = load_script("create")
COMPARE_AND_SET = load_script("compare_and_set")
LIST_PAGE = load_script("list_page")
PURGE_EXPIRED = load_script("purge_expired")
ALL_SCRIPTS = (CREATE, COMPARE_AND_SET, LIST_PAGE, PURGE_EXPIRED)


def create_call(
    keys: KeySchema,
    key: TaskKey,
    data: bytes,
    *,
    created_at_ms: int,
    expires_at_ms: int | None,
    purge_at_ms: int | None,
    max_live: int | None,
    now_ms: int,
    token: str,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``create.lua`` for one task: the only place that lays them out."""
    owner = key.owner_id
    return (
        [
            keys.task_key(key),
            keys.index_key(owner),
            keys.expiry_key(owner),
            keys.due_key(keys.shard_of(owner)),
        ],
        [
            data,
            keys.index_member(key, created_at_ms),
            "" if expires_at_ms is None else expires_at_ms,
            "" if purge_at_ms is None else purge_at_ms,
            "" if max_live is None else max_live,
            now_ms,
            keys.due_member(owner),
            PRUNE_BATCH,
            token,
        ],
    )
