"""Every option is checked before anything starts: one line on stderr, exit status 2.

``worker`` checks its queue name, numbers and handler before any process starts
(and before the server is reached), with the limits of the store its processes
open, so no process meets a setting the store refuses at each claim; a process
that fails at its start anyway (its handler no longer imports) ends the command
at once. The other commands check their options the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from taskstore_redis._cli.main import main

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "taskstore_redis"]
BOUND_S = 60.0

HANDLERS = textwrap.dedent(
    """
    def ok(lease):
        return "ok"
    """
)
CHILD_ONLY_FAILURE = textwrap.dedent(
    """
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        raise RuntimeError("only a worker process fails to import this")


    def ok(lease):
        return "ok"
    """
)


@pytest.fixture
def handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "optionjobs.py").write_text(HANDLERS)
    (tmp_path / "latejobs.py").write_text(CHILD_ONLY_FAILURE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKSTORE_REDIS_URL", raising=False)
    return tmp_path


def _unreachable() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == "", captured.out
    return lines[0]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--queue", ""], "--queue must be 1 to 200 characters, got 0"),
        (["--queue", "q" * 201], "--queue must be 1 to 200 characters, got 201: 'qqq"),
        (["--queue", "q" * 100_000], "got 100000: 'qqq"),
        (["--queue", "a\x1b[2Jb"], "--queue must not hold control characters, got 'a\\x1b[2Jb'"),
        (["--queue", "two\nlines"], "got 'two\\nlines'"),
        (["--queue", "nul\x00"], "got 'nul\\x00'"),
        (["--concurrency", "1001"], "--concurrency must be from 1 to 1000, got 1001"),
        (["--concurrency", "0"], "--concurrency: must be >= 1"),
        (["--lease-ms", "86400001"], "--lease-ms: lease_ms must be from 1 to 86400000"),
        (["--max-attempts", "1000001"], "--max-attempts: max_attempts must be from 1 to 1000000"),
        (["--processes", "257"], "--processes must be from 1 to 256, got 257"),
        (["--grace", "inf"], "--grace must be a number of seconds from 0 to 86400, got inf"),
        (["--grace", "nan"], "--grace must be a number of seconds from 0 to 86400, got nan"),
        (["--grace", "-1"], "--grace must be a number of seconds from 0 to 86400"),
        (["--grace", "1e300"], "--grace must be a number of seconds from 0 to 86400"),
    ],
)
def test_a_bad_worker_option_is_one_line_and_exit_2_before_the_server_is_reached(
    options: list[str], says: str, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "optionjobs:ok", *options, "--redis-url", _unreachable()]) == 2
    line = one_error_line(capsys)
    assert says in line, line
    assert len(line) < 300 and line.isprintable(), line


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("optionjobs:ok\x1b[2J", "MODULE:FUNCTION, got 'optionjobs:ok\\x1b[2J'"),
        ("optionjobs:" + "x" * 5000, "MODULE:FUNCTION, got 'optionjobs:xxx"),
    ],
)
def test_a_bad_handler_path_is_one_line_and_exit_2(
    target: str, says: str, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", target, "--redis-url", _unreachable()]) == 2
    line = one_error_line(capsys)
    assert says in line and len(line) < 300, line


@pytest.mark.redis
@pytest.mark.parametrize("queue", ["", "q" * 201], ids=["empty", "201-characters"])
def test_the_worker_command_with_a_bad_queue_exits_2_at_once_and_starts_nothing(
    queue: str, handlers: Path, redis_url: str
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [*COMMAND, "worker", "optionjobs:ok", "--queue", queue, "--redis-url", redis_url],
        cwd=handlers,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no "worker: N process(es)" line: nothing was started
    assert len(done.stderr.splitlines()) == 1 and "--queue must be 1 to 200" in done.stderr
    assert time.monotonic() - started < BOUND_S


@pytest.mark.slow
@pytest.mark.redis
def test_a_worker_process_that_fails_at_its_start_ends_the_command_at_once(
    handlers: Path, redis_url: str
) -> None:
    done = subprocess.run(
        [*COMMAND, "worker", "latejobs:ok", "--processes", "2", "--redis-url", redis_url],
        cwd=handlers,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "taskstore-redis: importing module 'latejobs' raised RuntimeError: "
        "only a worker process fails to import this"
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["get", "t" * 16_385, "--owner", "a"], "TASK_ID: string of 16385 characters"),
        (["get", "t", "--owner", "a" * 16_385], "--owner: string of 16385 characters"),
        (["list", "--owner", "a", "--limit", "0"], "limit must be between 1 and"),
        (["list", "--owner", "a", "--limit", "100000"], "limit must be between 1 and"),
        (["list", "--owner", "a", "--limit", "x"], "--limit: invalid int value: 'x'"),
        (["list", "--owner", "a", "--cursor", "c" * 16_385], "--cursor: string of 16385"),
        (["queues", "--prefix", "a\x1b[2Jb"], "key prefix must be"),
        (["cleanup", "--prefix", ""], "key prefix must be"),
        (["top", "--once", "--interval", "nan"], "--interval"),
    ],
)
def test_a_bad_option_of_another_command_is_one_line_and_exit_2_before_the_server_is_reached(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--redis-url", _unreachable()]) == 2
    line = one_error_line(capsys)
    assert says in line and line.isprintable(), line
    assert "\x1b" not in line


@pytest.mark.redis
def test_a_cursor_that_is_not_one_is_one_line_and_exit_2(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["list", "--owner", "a", "--cursor", "\x1b[2Jnot-a-cursor", "--redis-url", redis_url])
        == 2
    )
    line = one_error_line(capsys)
    assert "cursor" in line and "\x1b" not in line, line
