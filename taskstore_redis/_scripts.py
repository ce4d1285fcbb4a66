"""The Lua scripts, read from the ``lua/`` folder that ships inside the package."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


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
    return Path(__file__).resolve().parent.parent / "lua"


def load_script(name: str) -> Script:
    """Read ``lua/<name>.lua``."""
    source = (_lua_dir() / f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


CREATE = load_script("create")
COMPARE_AND_SET = load_script("compare_and_set")
LIST_PAGE = load_script("list_page")
PURGE_EXPIRED = load_script("purge_expired")
ALL_SCRIPTS = (CREATE, COMPARE_AND_SET, LIST_PAGE, PURGE_EXPIRED)
