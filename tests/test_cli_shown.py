"""What the command shows a person: no password in clear, no control character obeyed.

Every command that takes ``--redis-url`` masks the credentials of the URL in
every message (also a URL that cannot be parsed, shown as its scheme at most);
every value from the store or the command line (a status message, a queue name,
a task id, a handler's exception text) is shown with its control characters
escaped and its rich markup as written, piped or in a terminal; ``--json`` escapes
them as JSON does.
"""

from __future__ import annotations

import io
import re
import socket
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rich.console import Console

from taskstore_redis._cli import _connect, _doctor
from taskstore_redis._cli.main import main
from taskstore_redis.testing import RedisServer, redis_server

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "taskstore_redis"]
SECRET = f"s3cret{uuid.uuid4().hex[:8]}"
OWNER = "alice"
BOUND_S = 30.0
EVIL = "A\x1b[31mRED\x1b[2J"
"""A status message that would turn a terminal red and clear it."""
EVIL_SHOWN = "A\\x1b[31mRED\\x1b[2J"
MARKUP = "[bold red]x[/]"
"""Rich markup in user data: shown as written, never interpreted."""
RAW_CONTROLS = re.compile(r"\x1b\[(31m|2J)|[\x00\x07\x9b\u202e]")
"""What must never reach the output: the data's own control characters."""

HANDLERS = textwrap.dedent(
    f"""
    def ok(lease):
        return "ok"


    def evil(lease):
        raise ValueError("A\\x1b[31mRED\\x1b[2J\\nforged line, password {SECRET}")
    """
)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TASKSTORE_REDIS_URL", raising=False)


@pytest.fixture
def handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cwd holds the module ``jobs`` of handlers (for ``worker``)."""
    (tmp_path / "jobs.py").write_text(HANDLERS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == "", captured.out
    return lines[0]


def _port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- credentials ------------------------------------------------------------------------------

COMMANDS = {
    "get": ["get", "some-task", "--owner", OWNER],
    "list": ["list", "--owner", OWNER],
    "cleanup": ["cleanup"],
    "doctor": ["doctor"],
    "queues": ["queues"],
    "top": ["top", "--once"],
    "worker": ["worker", "jobs:ok"],
    "demo": ["demo"],
    "bench": ["bench", "--quick"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unreachable_url_is_shown_without_its_password_parameter(
    command: str, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{_port_nobody_listens_on()}/0?password={SECRET}"
    assert main([*COMMANDS[command], "--redis-url", url]) == 3
    line = one_error_line(capsys)
    assert line.startswith(f"taskstore-redis: cannot reach Redis at {url.replace(SECRET, '***')}")
    assert SECRET not in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_malformed_url_with_credentials_is_shown_as_its_scheme_only(
    command: str, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://u:{SECRET}@[::1:1/0"
    assert main([*COMMANDS[command], "--redis-url", url]) == 2
    line = one_error_line(capsys)
    assert line.startswith("taskstore-redis: not a Redis URL: 'redis://<unparsed>'")
    assert SECRET not in line and "[::1" not in line


@pytest.mark.parametrize(
    "url",
    [
        f"redis://u:{SECRET}@127.0.0.1:{SECRET[:3]}/0",  # a port that is no number
        f"redis://u:{SECRET}@127.0.0.1/0?db=x&password={SECRET}",  # a value redis-py refuses
        f"redis://u:{SECRET}@127.0.0.1/0?password={SECRET}&colour=red",  # an unknown option
        f"redis://u:{SECRET}@127.0.0.1:1/0\x1b[2J",  # control characters
    ],
)
def test_a_bad_url_from_the_environment_never_shows_its_credentials(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKSTORE_REDIS_URL", url)
    assert main(["list", "--owner", OWNER]) == 2
    line = one_error_line(capsys)
    assert SECRET not in line and "\x1b" not in line, line


def test_the_credentials_of_a_url_are_found_without_parsing_it() -> None:
    assert _connect.secrets(f"redis://u:{SECRET}@[::1:1/0") == [f"u:{SECRET}", SECRET]
    assert _connect.secrets("redis://h/0?db=1&password=p%40ss") == ["p%40ss", "p@ss"]
    assert _connect.secrets("redis://h/0") == []
    text = f"refused u:{SECRET} and p@ss\x1b[2J"
    assert _connect.scrub(text, [f"redis://u:{SECRET}@h/0?password=p%40ss", None]) == (
        "refused *** and ***\\x1b[2J"
    )


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    """A server that asks for the password ``SECRET``."""
    with redis_server() as server:
        with redis.Redis(host=server.host, port=server.port) as admin:
            admin.config_set("requirepass", SECRET)
        yield server
        with redis.Redis(host=server.host, port=server.port, password=SECRET) as admin:
            admin.config_set("requirepass", "")


@pytest.mark.redis
def test_a_task_not_found_names_the_server_without_its_password(
    locked_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{locked_server.port}/0?password={SECRET}"
    assert main(["get", "missing", "--owner", OWNER, "--redis-url", url]) == 1
    line = one_error_line(capsys)
    assert line.startswith("taskstore-redis: TaskNotFound")
    assert line.endswith(
        f"(at redis://127.0.0.1:{locked_server.port}/0?password=***, key prefix taskstore)"
    )
    assert SECRET not in line


# --- control characters in messages --------------------------------------------------------------


def test_doctor_lines_show_control_characters_escaped() -> None:
    out = io.StringIO()
    report = _doctor._Report(Console(file=out, force_terminal=True, width=200, highlight=False))
    report.line("user", "bob\x1b[2J")
    assert "bob\\x1b[2J" in out.getvalue() and "\x1b[2J" not in out.getvalue()


def test_a_command_line_argument_is_echoed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queues", "\x1b[2J"]) == 2
    line = one_error_line(capsys)
    assert "unrecognized arguments: \\x1b[2J" in line
