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
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from rich.console import Console

import taskstore_redis as ts
from taskstore_redis._cli import _doctor, _top, _worker
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
    """The cwd holds the module ``shownjobs`` of handlers (for ``worker``)."""
    (tmp_path / "shownjobs.py").write_text(HANDLERS)
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
    "pause": ["pause", "mail"],
    "limits": ["limits", "mail"],
    "resume": ["resume", "mail"],
    "resubmit": ["resubmit", "some-task", "--owner", OWNER],
    "top": ["top", "--once"],
    "worker": ["worker", "shownjobs:ok"],
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


# --- control characters and markup in what the store holds -------------------------------------


def _tasks(url: str, prefix: str, message: str) -> str:
    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        task_id = store.create("tools/call\x1b[2J", owner_id=OWNER).task.task_id
        store.set_variables(task_id, {"note\x1b[2J": "\x9b2J\u202e"}, owner_id=OWNER)
        store.update_status(task_id, "input_required", message, owner_id=OWNER)
    return task_id


def _terminal(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    """Piped output, or output for a terminal (rich then writes escape sequences of its own)."""
    if tty:
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("TERM", "xterm-256color")


@pytest.mark.redis
@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
def test_get_and_list_show_a_status_message_escaped_and_its_markup_as_written(
    redis_url: str,
    key_prefix: str,
    tty: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task_id = _tasks(redis_url, key_prefix, f"{EVIL} {MARKUP}\nsecond line")
    _terminal(monkeypatch, tty)
    where = ["--owner", OWNER, "--redis-url", redis_url, "--prefix", key_prefix]
    for argv in (["get", task_id, *where], ["list", *where]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert EVIL_SHOWN in out and MARKUP in out, out
        assert "\\nsecond" in out, out
        assert not RAW_CONTROLS.search(out), repr(out)
        assert ("\x1b[" in out) is tty  # the terminal path was taken, or not
    assert main(["get", task_id, *where]) == 0
    out = capsys.readouterr().out
    assert "tools/call\\x1b[2J" in out and "\\x9b2J\\u202e" in out, out


@pytest.mark.redis
def test_json_escapes_control_characters_as_json_does(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = f"{EVIL} \x9b2J \u202eevil \x00 \x7f"
    task_id = _tasks(redis_url, key_prefix, message)
    where = ["--owner", OWNER, "--redis-url", redis_url, "--prefix", key_prefix, "--json"]
    assert main(["get", task_id, *where]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n").isprintable(), repr(out)
    assert json.loads(out)["statusMessage"] == message
    assert json.loads(out)["_meta"] == {"note\x1b[2J": "\x9b2J\u202e"}
    assert main(["list", *where]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n").isprintable(), repr(out)
    assert json.loads(out)["tasks"][0]["statusMessage"] == message


def _table_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("│", "┃"))]


@pytest.mark.redis
@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
def test_queue_names_with_control_characters_keep_the_tables_of_queues_and_top_intact(
    redis_url: str,
    key_prefix: str,
    tty: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = ["nul\x00here", "two\nlines", f"{MARKUP}\x1b[2J"]
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        for name in names:
            store.submit("m", None, owner_id=OWNER, queue=name)
        lease = store.claim(names[1], timeout=5, worker_id="box\x1b[2J:1")
        assert lease is not None
    _terminal(monkeypatch, tty)
    where = ["--redis-url", redis_url, "--prefix", key_prefix]
    for argv in (["queues", *where], ["top", "--once", "--interval", "0.05", *where]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own styling, in a terminal
        assert not RAW_CONTROLS.search(out), repr(out)
        for shown in ("nul\\x00here", "two\\nlines", f"{MARKUP}\\x1b[2J"):
            assert shown in plain, plain
        rows = _table_rows(plain)
        queue_table = rows[: 1 + len(names)]  # the heading, then a row per queue
        assert len({row.count("│") + row.count("┃") for row in queue_table}) == 1, plain
        assert len({len(row) for row in queue_table}) == 1, plain
    assert "box\\x1b[2J:1" in plain


def test_top_shows_every_value_of_a_frame_escaped() -> None:
    frame = {
        "at": "2026-01-01T10:00:00+00:00",
        "queues": [
            {
                "queue": "q\x1b[2J",
                "paused": True,
                "ready": 1,
                "delayed": 0,
                "leased": 2,
                "leases_listed": 1,
                "oldest_ready_age_ms": 5.0,
                "throughput_per_min": None,
            }
        ],
        "workers": [
            {
                "worker_id": f"w{MARKUP}\x07",
                "leases": 1,
                "tasks": [
                    {"queue": "q\x1b[2J", "task_id": "t\x9b2J", "attempt": 1, "lost": False}
                    | {"expires_in_ms": 100}
                ],
            }
        ],
        "failures": [
            {
                "seen_at": datetime.now(UTC).isoformat(),
                "queue": "q\x1b[2J",
                "task_id": "t\x9b2J",
                "worker_id": "w\u202e",
                "attempt": 3,
                "message": f"{EVIL}\n{MARKUP}",
            }
        ],
    }
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=200).print(_top.render(frame, "p"))
    text = out.getvalue()
    assert not RAW_CONTROLS.search(text), repr(text)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    seen = ("q\\x1b[2J (paused)", "t\\x9b2J", f"w{MARKUP}\\x07", "w\\u202e", EVIL_SHOWN, MARKUP)
    for shown in seen:
        assert shown in plain, plain
    assert "q\\x1b[2J: 1 of 2 leases listed" in plain


def test_doctor_lines_show_control_characters_escaped() -> None:
    out = io.StringIO()
    report = _doctor._Report(Console(file=out, force_terminal=True, width=200, highlight=False))
    report.line("user", "bob\x1b[2J")
    assert "bob\\x1b[2J" in out.getvalue() and "\x1b[2J" not in out.getvalue()


def test_a_command_line_argument_is_echoed_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queues", "\x1b[2J"]) == 2
    line = one_error_line(capsys)
    assert "unrecognized arguments: \\x1b[2J" in line


# --- worker logs ------------------------------------------------------------------------------


def test_worker_log_lines_mask_credentials_and_escape_control_characters() -> None:
    url = f"redis://u:{SECRET}@h:1/0"
    formatter = _worker._ShownFormatter("%(levelname)s %(message)s", url)
    record = logging.LogRecord("w", logging.INFO, __file__, 1, "task %s: %s", ("t\x1b", EVIL), None)
    assert formatter.format(record) == "INFO task t\\x1b: " + EVIL_SHOWN
    try:
        raise ValueError(f"{EVIL}\nwith {SECRET}")
    except ValueError:
        record = logging.LogRecord("w", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    text = formatter.format(record)
    assert SECRET not in text and "\x1b" not in text
    assert text.splitlines()[1] == "Traceback (most recent call last):"  # its lines kept
    assert text.splitlines()[-1] == f"ValueError: {EVIL_SHOWN}\\nwith ***"  # its text on one


@pytest.mark.slow
@pytest.mark.redis
def test_a_handler_exception_reaches_the_log_and_get_escaped_and_the_password_masked(
    locked_server: RedisServer, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{locked_server.port}/0?password={SECRET}"
    prefix = f"shown{uuid.uuid4().hex[:8]}"
    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        task_id = store.submit("m", None, owner_id=OWNER, queue="evil", max_attempts=1).task.task_id
        proc = subprocess.Popen(
            [
                *COMMAND,
                "worker",
                "shownjobs:evil",
                "--queue",
                "evil",
                "--log-level",
                "INFO",
                "--redis-url",
                url,
                "--prefix",
                prefix,
            ],
            cwd=handlers,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            record = store.get(task_id, owner_id=OWNER)
            while not record.task.status.is_terminal:
                record = store.wait(
                    task_id, owner_id=OWNER, after_version=record.version, timeout=BOUND_S
                )
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=BOUND_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert record.task.status_message is not None and EVIL in record.task.status_message
    for text in (out, err):
        assert SECRET not in text and "\x1b[31m" not in text and "\x1b[2J" not in text, text
    assert "password=***" in out
    [failed] = [line for line in err.splitlines() if f"task {task_id} failed" in line]
    assert failed.endswith(f"{EVIL_SHOWN}\\nforged line, password ***")

    assert main(["get", task_id, "--owner", OWNER, "--redis-url", url, "--prefix", prefix]) == 0
    shown = capsys.readouterr().out
    assert EVIL_SHOWN in shown and "\\nforged line" in shown.replace("\n", "")
    assert not RAW_CONTROLS.search(shown)
