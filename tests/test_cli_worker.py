"""``taskstore-redis worker`` and ``taskstore-redis queues``, run as commands on a real server.

The worker command runs as a subprocess (``python -m taskstore_redis``) in a
directory holding the handler's module, and is stopped the way an operator stops
it: SIGTERM, or Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import taskstore_redis as ts
from taskstore_redis._cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.redis]  # worker commands in subprocesses, signals

ROOT = Path(__file__).resolve().parent.parent
OWNER = "ops"
BOUND_S = 30.0

HANDLERS = textwrap.dedent(
    """
    import time

    import anyio

    import taskstore_redis


    async def double(lease):
        return {"double": 2 * lease.params["n"]}


    def slow(lease):
        time.sleep(lease.params.get("sleep", 0))
        return "slept"


    def broken(lease):
        raise ValueError("no such customer")


    NOT_A_FUNCTION = 42
    """
)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console, so that no table heading wraps whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def handlers(tmp_path: Path) -> Path:
    """A directory with the module ``jobs`` of handlers, the cwd of the worker command."""
    (tmp_path / "jobs.py").write_text(HANDLERS)
    (tmp_path / "explodes.py").write_text("raise RuntimeError('broken at import')\n")
    return tmp_path


@pytest.fixture
def prefix() -> str:
    return f"cli{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[ts.GenericTaskStore]:
    with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as opened:
        yield opened


@contextmanager
def worker_command(
    cwd: Path, url: str, prefix: str, *options: str
) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    where = ["--redis-url", url, "--prefix", prefix]
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskstore_redis", "worker", *options, *where],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def final(store: ts.GenericTaskStore, task_id: str) -> ts.TaskRecord:
    record = store.get(task_id, owner_id=OWNER)
    while not record.task.status.is_terminal:
        record = store.wait(task_id, owner_id=OWNER, after_version=record.version, timeout=BOUND_S)
    return record


def test_worker_processes_complete_the_queue_and_stop_cleanly_on_sigterm(
    handlers: Path, redis_url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    ids = [
        store.submit("m", {"n": n}, owner_id=OWNER, queue="math").task.task_id for n in range(20)
    ]
    with worker_command(
        handlers, redis_url, prefix, "jobs:double", "--queue", "math", "--processes", "2"
    ) as proc:
        records = [final(store, task_id) for task_id in ids]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=BOUND_S)
    assert proc.returncode == 0, err
    assert [r.result for r in records] == [{"double": 2 * n} for n in range(20)]
    assert "taskstore-redis worker" in out and "completed" in out
    assert "Traceback" not in err
    assert store.queue_stats("math").leased == 0


def test_on_sigterm_a_handler_past_the_grace_period_is_released_not_left_leased(
    handlers: Path, redis_url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    task_id = store.submit("m", {"sleep": 5}, owner_id=OWNER).task.task_id
    with worker_command(handlers, redis_url, prefix, "jobs:slow", "--grace", "0.2") as proc:
        record = store.get(task_id, owner_id=OWNER)
        while record.job is None or record.job.state != "leased":
            record = store.wait(
                task_id, owner_id=OWNER, after_version=record.version, timeout=BOUND_S
            )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=BOUND_S)
    assert proc.returncode == 0, err
    record = store.get(task_id, owner_id=OWNER)
    assert record.task.status is ts.TaskStatus.WORKING
    assert record.job is not None and record.job.state == "ready"


def test_ctrl_c_stops_the_worker_with_the_interrupted_status(
    handlers: Path, redis_url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    task_id = store.submit("m", {"n": 1}, owner_id=OWNER).task.task_id
    with worker_command(handlers, redis_url, prefix, "jobs:double") as proc:
        assert final(store, task_id).result == {"double": 2}
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=BOUND_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("jobs", "MODULE:FUNCTION"),
        ("nosuchmodule:f", "cannot import module 'nosuchmodule'"),
        ("explodes:f", "raised RuntimeError: broken at import"),
        ("jobs:missing", "has no 'missing'"),
        ("jobs:NOT_A_FUNCTION", "is not a function"),
    ],
)
def test_a_bad_handler_is_one_line_and_exit_status_2(
    handlers: Path,
    redis_url: str,
    prefix: str,
    target: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(handlers)
    code = main(["worker", target, "--redis-url", redis_url, "--prefix", prefix])
    captured = capsys.readouterr()
    assert code == 2
    assert len(captured.err.splitlines()) == 1 and says in captured.err, captured.err
    assert "Traceback" not in captured.err


def test_a_raising_handler_shows_as_failed_in_queues_json(
    handlers: Path,
    redis_url: str,
    prefix: str,
    store: ts.GenericTaskStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task_id = store.submit("m", None, owner_id=OWNER, queue="billing", max_attempts=1).task.task_id
    store.submit("m", None, owner_id=OWNER, queue="mail", delay_ms=3_600_000)
    with worker_command(handlers, redis_url, prefix, "jobs:broken", "--queue", "billing") as proc:
        record = final(store, task_id)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=BOUND_S)
    assert (record.task.status_message, record.result) == (
        "no such customer",
        {"error": "no such customer", "type": "ValueError"},
    )
    assert main(["queues", "--json", "--redis-url", redis_url, "--prefix", prefix]) == 0
    shown = {one["queue"]: one for one in json.loads(capsys.readouterr().out)}
    assert sorted(shown) == ["billing", "mail"]
    assert (shown["billing"]["failed"], shown["billing"]["leased"]) == (1, 0)
    assert (shown["mail"]["delayed"], shown["mail"]["ready"]) == (1, 0)


def test_queues_prints_a_table_of_every_queue(
    redis_url: str, prefix: str, store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        store.submit("m", None, owner_id=OWNER, queue="reports")
    assert main(["queues", "--redis-url", redis_url, "--prefix", prefix]) == 0
    out = capsys.readouterr().out
    assert "oldest waiting" in out and "given up" in out
    row = next(line for line in out.splitlines() if "reports" in line)
    assert row.split("│")[2].strip() == "3"  # ready


def test_queues_on_a_prefix_without_queues_says_so(
    redis_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["queues", "--redis-url", redis_url, "--prefix", prefix]) == 0
    assert f"no queue under key prefix {prefix}" in capsys.readouterr().out


def test_sigterm_right_after_start_stops_every_process_cleanly(
    handlers: Path, redis_url: str, prefix: str
) -> None:
    with worker_command(handlers, redis_url, prefix, "jobs:double", "--processes", "2") as proc:
        assert proc.stdout is not None
        assert "SIGTERM or Ctrl-C stops" in proc.stdout.readline()  # every process started
        proc.send_signal(signal.SIGTERM)  # while they are still importing, most likely
        out, err = proc.communicate(timeout=BOUND_S)
    assert proc.returncode == 0, err
    assert "ended without reporting" not in err and "Traceback" not in err
    assert "(pid" in out and out.count(" 0 ") >= 2  # a row per process, nothing done
