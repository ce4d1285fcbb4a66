"""The contract between the Python code and the Lua scripts.

Calls: every script declares its KEYS and ARGV by name in its header
(``-- @key name``, ``-- @arg name``) and has one builder in
``taskstore_redis/_redis/contract.py`` that lays them out under the same names.

Reply codes: one table in ``lua/includes/codes.lua``, the same numbers in
:class:`Code`, and no script replies with a bare number of its own.

Includes: each script names the helpers it uses (``-- @include name``) and the
loader inlines each once, a helper's own includes before it; an error raised in
Redis names the file and line it came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from taskstore_redis._core.backend_types import (
    CoreWrite,
    Fence,
    LeaseRef,
    ListPosition,
    NewJob,
    NewTask,
    TaskKey,
    TaskRemoval,
    VariableMerge,
)
from taskstore_redis._core.errors import StoreUnavailable
from taskstore_redis._core.schedules import ScheduleFire, StoredSchedule
from taskstore_redis._redis.contract import BUILDERS, Call, Code
from taskstore_redis._redis.errors import map_redis_errors, script_sha
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import (
    ALL_SCRIPTS,
    INCLUDE,
    Script,
    ScriptSourceError,
    load_script,
)

LUA = Path(__file__).resolve().parent.parent / "lua"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


# --- calls ----------------------------------------------------------------------------------

KEYS = KeySchema("contract", 4)
TASK = TaskKey("alice", "t1")
JOB = NewJob(queue="mail", params=b"{}", max_attempts=3, delay_ms=0)
LEASE = LeaseRef(TASK, "mail", 7)
SCHEDULED = StoredSchedule(name="nightly", spec=b"{}", next_ms=1, version=1)


def new_task(job: NewJob | None) -> NewTask:
    return NewTask(
        key=TASK,
        format="2.0",
        data=b"{}",
        created_at_ms=1,
        expires_at_ms=None,
        purge_at_ms=None,
        max_live=None,
        now_ms=1,
        job=job,
    )


def core_write(queue: str | None, fence: Fence | None) -> CoreWrite:
    return CoreWrite(
        key=TASK,
        expected_core_version=1,
        format="2.0",
        data=b"{}",
        created_at_ms=1,
        terminal=True,
        now_ms=2,
        fence=fence,
        queue=queue,
        status="completed",
    )


def variable_merge(fence: Fence | None) -> VariableMerge:
    return VariableMerge(
        key=TASK,
        format_major=2,
        sets=[(b'"a"', b"1"), (b'"b"', b"2")],
        deletes=[b'"c"'],
        max_bytes=100,
        now_ms=2,
        fence=fence,
    )


SAMPLES: dict[str, list[Call]] = {
    "create": [
        BUILDERS["create"](KEYS, new_task(None), "aa01"),
        BUILDERS["create"](KEYS, new_task(JOB), "aa01"),
    ],
    "compare_and_set": [
        BUILDERS["compare_and_set"](KEYS, core_write(None, None), "aa01"),
        BUILDERS["compare_and_set"](KEYS, core_write("mail", None), "aa01"),
        BUILDERS["compare_and_set"](KEYS, core_write(None, Fence(queue="mail", token=7)), "aa01"),
    ],
    "merge_variables": [
        BUILDERS["merge_variables"](KEYS, variable_merge(None), "aa01"),
        BUILDERS["merge_variables"](KEYS, variable_merge(Fence(queue="mail", token=7)), "aa01"),
    ],
    "delete": [BUILDERS["delete"](KEYS, TaskRemoval(key=TASK, created_at_ms=1, data=b"{}"))],
    "list_page": [
        BUILDERS["list_page"](KEYS, "alice", None, 10),
        BUILDERS["list_page"](KEYS, "alice", ListPosition(1, "t1"), 10),
    ],
    "purge_expired": [BUILDERS["purge_expired"](KEYS, 0, 1, 500)],
    "claim": [BUILDERS["claim"](KEYS, "mail", 0, count=2, lease_ms=1000, worker_id="w", batch=8)],
    "complete_and_claim": [
        BUILDERS["complete_and_claim"](
            KEYS,
            "mail",
            KEYS.shard_of(TASK.owner_id),
            [(core_write("mail", Fence(queue="mail", token=7)), "aa01")] * 2,
            count=2,
            lease_ms=1000,
            worker_id="w",
            batch=8,
        ),
        BUILDERS["complete_and_claim"](
            KEYS, "mail", 0, [], count=0, lease_ms=1000, worker_id="w", batch=8
        ),
    ],
    "recover": [BUILDERS["recover"](KEYS, "mail", 0, 8)],
    "renew": [BUILDERS["renew"](KEYS, "mail", 0, [LEASE, LeaseRef(TASK, "mail", 8)], 1000)],
    "release": [
        BUILDERS["release"](KEYS, LEASE, 0, "aa01", count_attempt=True),
        BUILDERS["release"](KEYS, LEASE, 0, "aa01", count_attempt=False),
    ],
    "queue_stats": [BUILDERS["queue_stats"](KEYS, "mail", 0)],
    "queue_due": [BUILDERS["queue_due"](KEYS, "mail", 0)],
    "queue_leases": [BUILDERS["queue_leases"](KEYS, "mail", 0, 10)],
    "pause": [BUILDERS["pause"](KEYS, "mail", 0, True), BUILDERS["pause"](KEYS, "mail", 0, False)],
    "limits": [
        BUILDERS["limits"](KEYS, "mail", 0, None, {"c": 3, "r": 2.5, "b": 1}),
        BUILDERS["limits"](KEYS, "mail", 0, "tenant", {}),
    ],
    "schedule_name": [
        BUILDERS["schedule_name"](KEYS, "nightly", "alice", remove=False),
        BUILDERS["schedule_name"](KEYS, "nightly", "alice", remove=True),
    ],
    "schedule": [BUILDERS["schedule"](KEYS, "alice", "nightly", b"{}", 60_000)],
    "unschedule": [BUILDERS["unschedule"](KEYS, "alice", "nightly")],
    "schedules_due": [
        BUILDERS["schedules_due"](KEYS, 0, 60_000, 10),
        BUILDERS["schedules_due"](KEYS, 0, float("inf"), 10),
    ],
    "fire": [
        BUILDERS["fire"](
            KEYS,
            "alice",
            SCHEDULED,
            ScheduleFire(due_at_ms=1, next_ms=2, tick_ms=1),
            new_task(JOB),
            "aa01",
        ),
        BUILDERS["fire"](
            KEYS,
            "alice",
            SCHEDULED,
            ScheduleFire(due_at_ms=1, next_ms=2, tick_ms=None),
            None,
            "aa01",
        ),
    ],
}
"""Calls of every script from its builder, one for each shape its arguments take."""


def test_every_script_has_one_builder_and_samples() -> None:
    names = {script.name for script in ALL_SCRIPTS}
    assert set(BUILDERS) == names
    assert set(SAMPLES) == names


def split(declared: tuple[str, ...]) -> tuple[list[str], list[str], str | None]:
    """Declared names as (required, optional group, name of a last variadic one or None)."""
    required = [name for name in declared if not name.startswith("[")]
    optional = [name[1:-1] for name in declared if name.startswith("[")]
    rest = None
    if required and required[-1].endswith("..."):
        rest = required.pop()[: -len("...")]
    assert declared == (
        *required,
        *(f"[{name}]" for name in optional),
        *([] if rest is None else [f"{rest}..."]),
    ), "optional names come last, a variadic one after all others"
    assert not (optional and rest), "a script has an optional group or a variadic tail"
    return required, optional, rest


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda script: script.name)
def test_each_builder_lays_out_the_keys_and_arguments_its_script_declares(
    script: Script,
) -> None:
    assert script.keys, f"{script.name}.lua declares no @key"
    keys, optional_keys, no_rest = split(script.keys)
    assert no_rest is None, "KEYS take no variadic tail"
    args, optional_args, rest = split(script.args)
    shapes = set()
    for call in SAMPLES[script.name]:
        assert call.script is script
        assert list(call.keys) in (keys, keys + optional_keys)
        assert list(call.args) in (args, args + optional_args)
        assert (list(call.keys) == keys) == (list(call.args) == args), "a group: all or none"
        assert (call.rest is None) == (rest is None)
        if call.rest is not None:
            assert call.rest[0] == rest
        shapes.add(len(call.keys))
        laid_keys, laid_args = call.keys_and_args()
        assert laid_keys == list(call.keys.values())
        assert len(laid_args) == len(call.args) + (0 if call.rest is None else len(call.rest[1]))
    if optional_keys:
        assert shapes == {len(keys), len(keys) + len(optional_keys)}, "both shapes sampled"


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda script: script.name)
def test_a_script_reads_exactly_the_keys_and_arguments_its_header_declares(
    script: Script,
) -> None:
    code = code_of(LUA / f"{script.name}.lua")
    names = {"KEYS": "KEYS", "ARGV": "ARGV"}
    handed = re.search(r"\breturn (\w+)\(KEYS, ARGV\)", code)
    if handed:  # the script hands its KEYS and ARGV whole to a helper: read the helper's use
        helper = re.compile(rf"^local function {handed.group(1)}\((\w+), (\w+)\)", re.M)
        for path in sorted((LUA / "includes").glob("*.lua")):
            found = helper.search(code_of(path))
            if found:
                code, names = code_of(path), {"KEYS": found.group(1), "ARGV": found.group(2)}
                break
        else:
            raise AssertionError(f"no helper {handed.group(1)} in lua/includes/")
    for kind, declared in (("KEYS", script.keys), ("ARGV", script.args)):
        fixed = [name for name in declared if not name.endswith("...")]
        used = [int(n) for n in re.findall(rf"\b{names[kind]}\[(\d+)\]", code)]
        assert max(used, default=0) == len(fixed), (kind, sorted(set(used)), declared)


def code_of(path: Path) -> str:
    """A Lua file's text without its comments."""
    own = path.read_text(encoding="utf-8")
    return "\n".join(line.split("--", 1)[0] for line in own.splitlines())


# --- reply codes ----------------------------------------------------------------------------


def lua_codes() -> dict[str, int]:
    """The ``Code`` table of lua/includes/codes.lua, read as its text spells it."""
    text = (LUA / "includes" / "codes.lua").read_text(encoding="utf-8")
    table = re.search(r"^local Code = \{\n(.*?)^\}", text, re.M | re.S)
    assert table is not None
    entries = re.findall(r"^  ([A-Z_]+) = (-?\d+),", table.group(1), re.M)
    assert len(entries) == len(table.group(1).splitlines()), "one entry a line"
    return {name: int(value) for name, value in entries}


def test_the_lua_code_table_and_the_python_enum_agree() -> None:
    assert lua_codes() == {code.name: code.value for code in Code}


def test_every_code_is_one_number() -> None:
    assert len(set(lua_codes().values())) == len(lua_codes())


BARE_CODE = re.compile(r"return \{?\s*-?\d|= \{-?\d")
"""A reply that starts with a number literal instead of a ``Code`` entry."""


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda script: script.name)
def test_a_script_replies_with_codes_of_the_table_never_a_bare_number(script: Script) -> None:
    own = (LUA / f"{script.name}.lua").read_text(encoding="utf-8")
    code = "\n".join(line.split("--", 1)[0] for line in own.splitlines())
    assert not BARE_CODE.search(code), BARE_CODE.search(code)
    if "Code." in code:
        assert "codes" in script.includes
        for name in re.findall(r"\bCode\.(\w+)", code):
            assert name in Code.__members__


# --- includes -------------------------------------------------------------------------------


def test_each_include_is_inlined_once_after_the_first_line_its_own_includes_first(
    tmp_path: Path,
) -> None:
    folder = write(
        tmp_path,
        {
            "includes/base.lua": "local function base() return 1 end\n",
            "includes/middle.lua": "-- @include base\nlocal function middle() return base() end\n",
            "includes/other.lua": "-- @include base\nlocal function other() return base() end\n",
            "both.lua": "#!lua flags=\n-- @include middle\n-- @include other\nreturn 0\n",
        },
    )
    script = load_script("both", folder)
    assert script.includes == ("base", "middle", "other")
    assert script.source == (
        "#!lua flags=\n"
        "local function base() return 1 end\n"
        "-- @include base\nlocal function middle() return base() end\n"
        "-- @include base\nlocal function other() return base() end\n"
        "-- @include middle\n-- @include other\nreturn 0\n"
    )


def test_an_unknown_include_names_the_file_and_line_that_asks_for_it(tmp_path: Path) -> None:
    folder = write(tmp_path, {"lost.lua": "#!lua flags=\n-- why\n-- @include nowhere\n"})
    with pytest.raises(ScriptSourceError, match=r"lua/lost\.lua:3: includes 'nowhere', which is"):
        load_script("lost", folder)


def test_helpers_that_include_each_other_are_refused_with_the_cycle(tmp_path: Path) -> None:
    folder = write(
        tmp_path,
        {
            "includes/a.lua": "-- @include b\n",
            "includes/b.lua": "\n-- @include a\n",
            "loop.lua": "#!lua flags=\n-- @include a\n",
        },
    )
    with pytest.raises(ScriptSourceError, match=r"lua/includes/b\.lua:2: .* a -> b -> a"):
        load_script("loop", folder)


def helpers_defined() -> dict[str, str]:
    """Each local function or constant of lua/includes/, with the helper file defining it."""
    defined: dict[str, str] = {}
    for path in (LUA / "includes").glob("*.lua"):
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r"^local (?:function )?(\w+)", text, re.M):
            defined[name] = path.stem
    return defined


@pytest.mark.parametrize("script", ALL_SCRIPTS, ids=lambda script: script.name)
def test_every_helper_a_script_uses_is_one_it_includes(script: Script) -> None:
    own = (LUA / f"{script.name}.lua").read_text(encoding="utf-8")
    included = set(script.includes)
    code = "\n".join(line.split("--", 1)[0] for line in own.splitlines())
    for name, helper in helpers_defined().items():
        if re.search(rf"\b{name}\b", code):
            assert helper in included, f"{script.name}.lua uses {name} of {helper}.lua"
    named = {match.group(1) for line in own.splitlines() if (match := INCLUDE.match(line))}
    for helper in named:
        helper_text = (LUA / "includes" / f"{helper}.lua").read_text(encoding="utf-8")
        own_names = re.findall(r"^local (?:function )?(\w+)", helper_text, re.M)
        assert any(re.search(rf"\b{name}\b", code) for name in own_names), (
            f"{script.name}.lua includes {helper} and uses none of it"
        )


# --- error lines ------------------------------------------------------------------------


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


FAILING = {
    "includes/first.lua": "-- one\nlocal function first()\n  return 1\nend\n",
    "includes/second.lua": (
        "-- @include first\n"
        "local function second(command)\n"
        "  return redis.call(command)\n"  # line 3: an unknown command fails here
        "end\n"
    ),
    "fails.lua": (
        "#!lua flags=\n"
        "-- A script that fails where ARGV[1] says.\n"
        "-- @include second\n"
        "if ARGV[1] == 'helper' then\n"
        "  return second('NOSUCHCOMMAND')\n"
        "end\n"
        "return undefined_name + first()\n"  # line 7: a global that does not exist
    ),
}


def refusal(client: redis.Redis, script: Script, where: str) -> str:
    """The message of the StoreUnavailable a failing script call becomes.

    The call goes as the backend sends it: EVALSHA, its mapping told the script's SHA
    (the server's message may name it, as Redis 7 does, or not, as Valkey does).
    """
    client.script_load(script.source)
    command = Call(script, {}, {"where": where}).command()
    mapping = map_redis_errors("fail", write=True, sha=script_sha(command))
    untyped: Any = client  # execute_command is untyped in redis-py
    with pytest.raises(StoreUnavailable) as caught, mapping:
        untyped.execute_command(*command)
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
    return str(caught.value)


@pytest.mark.redis
def test_an_error_in_a_script_names_its_file_and_line(tmp_path: Path, client: redis.Redis) -> None:
    script = load_script("fails", write(tmp_path, FAILING))
    message = refusal(client, script, "body")
    assert "lua/fails.lua:7" in message, message
    assert "user_script" not in message


@pytest.mark.redis
def test_an_error_in_an_included_helper_names_the_helper_file_and_line(
    tmp_path: Path, client: redis.Redis
) -> None:
    script = load_script("fails", write(tmp_path, FAILING))
    message = refusal(client, script, "helper")
    assert "lua/includes/second.lua:3" in message, message


# --- the page that documents them ----------------------------------------------------------

DOC = LUA.parent / "docs" / "internals" / "scripts.md"


def doc_rows(first: str) -> dict[str, list[str]]:
    """The rows of the doc's table whose header starts with ``first``, by their first cell."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(at for at, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def names(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([^`]+)`", cell))


def test_the_scripts_page_lists_every_script_as_declared() -> None:
    rows = doc_rows("Script")
    assert list(rows) == [script.name for script in ALL_SCRIPTS]
    for script in ALL_SCRIPTS:
        _, _, keys, args, _, writes = rows[script.name]
        assert names(keys) == script.keys
        assert names(args) == script.args
        read_only = "no-writes" in script.source.splitlines()[0]
        assert writes == ("no" if read_only else "yes")


def test_the_scripts_page_lists_every_code_and_every_helper() -> None:
    codes = doc_rows("Code")
    assert {name: int(cells[1]) for name, cells in codes.items()} == {
        code.name: code.value for code in Code
    }
    helpers = doc_rows("Helper")
    assert sorted(helpers) == sorted(path.stem for path in (LUA / "includes").glob("*.lua"))
