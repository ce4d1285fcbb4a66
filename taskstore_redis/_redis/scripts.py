"""The Lua scripts, read from the ``lua/`` folder that ships inside the package.

A script names the helpers it uses (``-- @include name``, for
``lua/includes/name.lua``); the loader inlines each once after the script's first
line and remembers which file each line of the source came from, so that an error
Redis reports at ``user_script:<n>`` is shown at its file and line (see
``docs/internals/scripts.md``). The KEYS and ARGV builders are in ``contract.py``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

INCLUDE = re.compile(r"^--\s*@include\s+(\S+)\s*$")
"""A line naming a helper file: ``-- @include name`` for ``lua/includes/name.lua``."""
DECLARATION = re.compile(r"^-- @(key|arg)\s+(\S+)")
"""A header line naming one of a script's KEYS or ARGV: ``-- @key name  what it is``."""


class ScriptSourceError(ValueError):
    """A script names a helper that is not in ``lua/includes/``, or helpers include each other."""


@dataclass(frozen=True)
class Piece:
    """A run of lines of a script's source as sent to Redis, taken from one file."""

    first: int
    """Its first line in the source sent (1-based)."""
    count: int
    path: str
    """The file, as ``lua/<name>.lua`` or ``lua/includes/<name>.lua``."""
    start: int
    """Its first line in that file."""


@dataclass(frozen=True)
class Script:
    """One server-side script: its name, Lua source and SHA-1 (what EVALSHA takes).

    The source is the script's first (``#!lua``) line, then the helpers it
    includes (each once, a helper's own includes before it), then the rest of
    the script; ``pieces`` says which file each line came from.
    """

    name: str
    source: str
    sha: str
    includes: tuple[str, ...] = ()
    """The helpers inlined, in the order they appear in the source."""
    pieces: tuple[Piece, ...] = ()
    keys: tuple[str, ...] = ()
    """The names of its KEYS in order, as its header declares them (``-- @key name``):
    ``[name]`` for one of an optional group that comes last, all or none of it."""
    args: tuple[str, ...] = ()
    """The names of its ARGV in order (``-- @arg name``); ``name...`` for any number
    of values, last."""

    def origin(self, line: int) -> tuple[str, int]:
        """The file and line that line ``line`` of the source sent came from."""
        for piece in self.pieces:
            if piece.first <= line < piece.first + piece.count:
                return piece.path, piece.start + line - piece.first
        return f"lua/{self.name}.lua (as sent)", line


def _lua_dir() -> Path:
    packaged = resources.files("taskstore_redis").joinpath("lua")
    if packaged.is_dir():
        return Path(str(packaged))
    # a source checkout: the scripts live at the top of the repository
    return Path(__file__).resolve().parents[2] / "lua"


def _lines(text: str) -> list[str]:
    """A file's lines, each with its line end (the last one given one if it lacks it)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _includes(lines: list[str], path: str) -> list[tuple[str, str]]:
    """The helpers a file names, each with where it names it (``path:line``)."""
    return [
        (match.group(1), f"{path}:{number}")
        for number, line in enumerate(lines, 1)
        if (match := INCLUDE.match(line))
    ]


def _resolve(folder: Path, named: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """The helpers to inline for these names: each once, its own includes before it."""
    done: dict[str, list[str]] = {}
    chain: list[str] = []

    def visit(name: str, where: str) -> None:
        if name in done:
            return
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            raise ScriptSourceError(f"{where}: helpers include each other: {cycle}")
        path = folder / "includes" / f"{name}.lua"
        if not path.is_file():
            raise ScriptSourceError(
                f"{where}: includes {name!r}, which is not a file in lua/includes/"
            )
        lines = _lines(path.read_text(encoding="utf-8"))
        chain.append(name)
        for inner, inner_where in _includes(lines, f"lua/includes/{name}.lua"):
            visit(inner, inner_where)
        chain.pop()
        done[name] = lines

    for name, where in named:
        visit(name, where)
    return list(done.items())


def load_script(name: str, folder: Path | None = None) -> Script:
    """Read ``lua/<name>.lua`` and inline the helpers it includes after its first line."""
    folder = _lua_dir() if folder is None else folder
    own_path = f"lua/{name}.lua"
    own = _lines((folder / f"{name}.lua").read_text(encoding="utf-8"))
    helpers = _resolve(folder, _includes(own, own_path))
    pieces = [Piece(1, 1, own_path, 1)]
    parts = own[:1]
    for helper, lines in helpers:
        pieces.append(Piece(len(parts) + 1, len(lines), f"lua/includes/{helper}.lua", 1))
        parts += lines
    pieces.append(Piece(len(parts) + 1, len(own) - 1, own_path, 2))
    parts += own[1:]
    source = "".join(parts)
    script = Script(
        name,
        source,
        hashlib.sha1(source.encode("utf-8")).hexdigest(),
        tuple(helper for helper, _ in helpers),
        tuple(pieces),
        _declared(own, "key"),
        _declared(own, "arg"),
    )
    _BY_SHA[script.sha] = script
    return script


def _declared(lines: list[str], kind: str) -> tuple[str, ...]:
    """The names a script's header declares for its KEYS (``key``) or ARGV (``arg``)."""
    return tuple(
        match.group(2)
        for line in lines
        if (match := DECLARATION.match(line)) and match.group(1) == kind
    )


_BY_SHA: dict[str, Script] = {}
_SHA = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")
"""A script's SHA in an error message (``script: <sha>``, or ``f_<sha>`` before Redis 7)."""
_USER_SCRIPT_LINE = re.compile(r"user_script:(\d+)")


def locate_lines(message: str, sha: str | None = None) -> str:
    """A script error's text with ``user_script:<n>`` as the file and line it came from.

    The server counts lines in the source sent, helpers included. The script is the
    one of ``sha`` (what the caller sent), else the one whose SHA the message names
    (Redis 7 names it; Valkey does not); a script loaded here is known by its SHA.
    """
    script = None if sha is None else _BY_SHA.get(sha)
    if script is None and (found := _SHA.search(message)) is not None:
        script = _BY_SHA.get(found.group(0))
    if script is None:
        return message

    def origin(match: re.Match[str]) -> str:
        path, line = script.origin(int(match.group(1)))
        return f"{path}:{line}"

    return _USER_SCRIPT_LINE.sub(origin, message)


CREATE = load_script("create")
COMPARE_AND_SET = load_script("compare_and_set")
MERGE_VARIABLES = load_script("merge_variables")
LIST_PAGE = load_script("list_page")
PURGE_EXPIRED = load_script("purge_expired")
CLAIM = load_script("claim")
COMPLETE_AND_CLAIM = load_script("complete_and_claim")
RECOVER = load_script("recover")
RENEW = load_script("renew")
RELEASE = load_script("release")
QUEUE_STATS = load_script("queue_stats")
QUEUE_DUE = load_script("queue_due")
QUEUE_LEASES = load_script("queue_leases")
DELETE = load_script("delete")
PAUSE = load_script("pause")
LIMITS = load_script("limits")
SCHEDULE_NAME = load_script("schedule_name")
SCHEDULE = load_script("schedule")
UNSCHEDULE = load_script("unschedule")
SCHEDULES_DUE = load_script("schedules_due")
FIRE = load_script("fire")
ALL_SCRIPTS = (
    CREATE,
    COMPARE_AND_SET,
    MERGE_VARIABLES,
    LIST_PAGE,
    PURGE_EXPIRED,
    CLAIM,
    COMPLETE_AND_CLAIM,
    RECOVER,
    RENEW,
    RELEASE,
    QUEUE_STATS,
    QUEUE_DUE,
    QUEUE_LEASES,
    DELETE,
    PAUSE,
    LIMITS,
    SCHEDULE_NAME,
    SCHEDULE,
    UNSCHEDULE,
    SCHEDULES_DUE,
    FIRE,
)
