"""The ``taskstore-redis`` command: the demo on every backend, and the small subcommands."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from rich.console import Console
from rich.progress import Progress

import taskstore_redis as ts
from taskstore_redis._async._redis import RedisBackend
from taskstore_redis._async._store import GenericTaskStore as AsyncStore
from taskstore_redis._cli import _app, _doctor, _exit, _inspect
from taskstore_redis._cli.demo import verify as _demo_verify
from taskstore_redis._cli.demo.client import Bars
from taskstore_redis._cli.demo.runner import Demo
from taskstore_redis._cli.demo.worker import WorkerReport
from taskstore_redis._cli.main import main
from taskstore_redis._core import shown
from taskstore_redis._core.errors import InvalidArgument
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import ALL_SCRIPTS
from taskstore_redis.backend import TaskKey, VersionedRecord
from taskstore_redis.testing import RedisServer, RedisUnavailable, redis_server

from .test_acl import ACL_RULES, make_user, refusals

ACL_COMMANDS = [word[1:].upper() for word in ACL_RULES.split() if word.startswith("+")]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give rich a fixed, wide console, so that no table cell wraps whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "200")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failed command printed on stderr (and nothing on stdout)."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == "", captured.out
    return lines[0]


def _demo_prefix(out: str) -> str:
    match = re.search(r"--prefix (\S+-demo-[0-9a-f]{8})", out)
    assert match is not None, out
    return match.group(1)


# --- the demo -----------------------------------------------------------------------------


def test_the_demo_on_the_in_memory_backend_passes_and_prints_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["demo", "--backend", "memory", "--tasks", "60", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "taskstore-redis demo" in out
    assert "60 over 8 owners; 2 workers x 16 coroutines" in out
    assert re.search(r"verification\s*│\s*passed", out), out
    assert "ops/s" in out
    assert "failed" in out  # the terminal counts


def test_the_demo_fails_and_names_the_check_when_a_result_differs_from_the_recomputed_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers compute the sum from the variables they read back; the verifier
    # recomputes it from the plan. Skewing the plan must make the check fail.
    monkeypatch.setattr(_demo_verify, "expected_sum", lambda seed, index: -1)
    code = main(["demo", "--backend", "memory", "--tasks", "30", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "check 'result' failed" in out
    assert "FAILED" in out


def test_a_client_error_on_a_task_is_counted_and_the_task_still_followed_to_the_end(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the client's first approval of every 7th task fails; it tries again from the
    # version it last saw, so every task still ends, and the "no errors" check fails
    set_variables = AsyncStore.set_variables
    failed: set[str] = set()

    async def flaky(store: AsyncStore, task_id: str, variables: Any, *, owner_id: str) -> Any:
        if variables == {"approval": "yes"} and task_id not in failed and len(failed) < 3:
            failed.add(task_id)
            raise InvalidArgument("refused once on purpose")
        return await set_variables(store, task_id, variables, owner_id=owner_id)

    monkeypatch.setattr(AsyncStore, "set_variables", flaky)
    code = main(["demo", "--backend", "memory", "--tasks", "40", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert len(failed) == 3
    assert re.search(r"terminal\s*│\s*completed \d+, failed 4, cancelled", out), out
    assert "check 'no errors' failed" in out
    assert "refused once on purpose" in out


@pytest.mark.parametrize("value", ["0", "x"])
def test_the_demo_refuses_a_worker_count_below_one_in_one_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--backend", "memory", "--workers", value]) == 2
    line = one_error_line(capsys)
    assert line.startswith("taskstore-redis demo: argument --workers: must be")
    assert "_positive" not in line


@pytest.mark.slow
@pytest.mark.redis
def test_the_demo_with_worker_processes_on_redis_passes_and_leaves_its_tasks_to_inspect(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--redis-url", redis_url, "--tasks", "120", "--workers", "2"]
    code = main([*argv, "--concurrency", "8", "--seed", "7"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"verification\s*│\s*passed", out), out
    assert "seed 7" in out
    prefix = _demo_prefix(out)
    with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as store:
        page = store.list(owner_id="demo-owner-0", limit=100)
        assert len(page.tasks) == 120 // 8
        assert all(record.task.status.is_terminal for record in page.tasks)
        # each task went through the demo's queue: submitted, then claimed by a worker
        jobs = [store.get(r.task.task_id, owner_id="demo-owner-0").job for r in page.tasks]
        assert all(job is not None and job.queue == "demo" for job in jobs)
        assert {job.worker_id for job in jobs if job is not None} <= {
            "demo-worker-0",
            "demo-worker-1",
        }
        stats = store.queue_stats("demo")
    assert stats.submitted == 120
    assert stats.claimed >= 120  # more only if a lease ran out under a slow machine
    assert stats.ready == stats.leased == 0


DEMO_GIVES_UP_S = 60
"""The demo's own ``--timeout`` in these tests: it gives up and says why well before the
test stops waiting for it."""


def run_demo_command(*argv: str) -> subprocess.CompletedProcess[str]:
    """``taskstore-redis demo`` as a subprocess, on this tree, with a wide console.

    The demo and its worker processes run in a process group of their own, all killed
    if the demo has not ended long after its own ``--timeout``; nothing outlives the test.
    """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "COLUMNS": "200"}
    command = [sys.executable, "-m", "taskstore_redis", "demo", *argv]
    if "--timeout" not in argv:
        command += ["--timeout", str(DEMO_GIVES_UP_S)]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as demo:
        try:
            out, err = demo.communicate(timeout=DEMO_GIVES_UP_S + 60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            out, err = demo.communicate()
            pytest.fail(f"the demo did not end after its own --timeout:\n{out}\n{err}")
        finally:
            with contextlib.suppress(ProcessLookupError):  # its workers, if any outlived it
                os.killpg(demo.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, demo.returncode, out, err)


@pytest.mark.slow
@pytest.mark.redis
def test_demo_chaos_kills_a_worker_and_every_task_still_ends_exactly_once(redis_url: str) -> None:
    done = run_demo_command(
        "--redis-url", redis_url, "--tasks", "600", "--workers", "3", "--chaos", "--seed", "5"
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "with a 2000 ms lease" in out
    # rich may wrap the line inside its table: read it as one line of words
    flat = " ".join(out.replace("│", " ").split())
    killed = re.search(r"worker (\d+) \(pid (\d+)\) SIGKILLed after (\d+) tasks ended", flat)
    assert killed is not None, out
    assert 0 < int(killed.group(3)) < 600  # mid-run: a third of its share ended
    taken = re.search(r"of the (\d+) tasks it held, (\d+) were finished by other workers", flat)
    assert taken is not None, out
    cancelled = re.search(r"(\d+) cancelled by the client meanwhile", flat)
    assert cancelled is not None, out
    held, by_others = int(taken.group(1)), int(taken.group(2))
    # a completion the killed worker wrote as it died, its report of it lost on the way
    itself = re.search(r"(\d+) completed by the killed worker itself", flat)
    assert held >= 1
    assert by_others + int(cancelled.group(1)) + (int(itself.group(1)) if itself else 0) == held, (
        out
    )
    assert re.search(r"verification\s*│\s*passed \(.*once.*taken over\)", out, re.S), out
    prefix = _demo_prefix(out)
    with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as store:
        stats = store.queue_stats("demo")
        records = [
            store.get(record.task.task_id, owner_id=f"demo-owner-{owner}")
            for owner in range(8)
            for record in store.list(owner_id=f"demo-owner-{owner}", limit=1000).tasks
        ]
    assert len(records) == 600
    assert all(record.task.status.is_terminal for record in records)
    assert stats.ready == stats.leased == 0
    # the killed worker's leases ran out and other workers claimed those tasks again
    again = [r for r in records if r.job is not None and r.job.attempt >= 2]
    assert len(again) >= by_others
    victim = f"demo-worker-{killed.group(1)}"
    assert all(r.job is not None and r.job.worker_id != victim for r in again)


@pytest.mark.slow
@pytest.mark.cluster
def test_demo_chaos_on_a_redis_cluster_passes(cluster_url: str) -> None:
    done = run_demo_command(
        "--redis-url", cluster_url, "--tasks", "240", "--workers", "2", "--chaos", "--seed", "9"
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    flat = " ".join(out.replace("│", " ").split())  # rich may wrap the line in its table
    assert re.search(r"worker \d \(pid \d+\) SIGKILLed after \d+ tasks ended", flat), out
    assert re.search(r"verification\s*│\s*passed \(.*taken over\)", out, re.S), out


@pytest.mark.slow
@pytest.mark.redis
def test_the_demo_without_chaos_runs_as_a_command_and_passes(redis_url: str) -> None:
    done = run_demo_command("--redis-url", redis_url, "--tasks", "100", "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"verification\s*│\s*passed", done.stdout), done.stdout
    assert "chaos" not in done.stdout


def test_demo_chaos_refuses_the_in_memory_backend_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--backend", "memory", "--chaos"]) == 2
    assert "--chaos kills a worker process: it needs Redis" in one_error_line(capsys)


@pytest.mark.redis
def test_demo_chaos_refuses_a_single_worker_in_one_line(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--redis-url", redis_url, "--chaos", "--workers", "1"]) == 2
    assert "--chaos needs --workers 2 or more" in one_error_line(capsys)


@pytest.mark.redis
def test_the_demo_client_waits_for_changes_instead_of_polling(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one worker of two coroutines: most tasks sit unchanged for a while, which a
    # polling client would read again and again; a waiting one reads only on a change
    args = argparse.Namespace(
        workers=1, tasks=80, owners=4, concurrency=2, timeout=60.0, seed=3, prefix=None
    )
    demo = Demo(args, redis_url, Console(file=io.StringIO()))
    reads = 0
    read = RedisBackend.get

    async def counted(backend: RedisBackend, key: TaskKey) -> VersionedRecord | None:
        nonlocal reads
        reads += 1  # the client's reads only: the workers are other processes
        return await read(backend, key)

    monkeypatch.setattr(RedisBackend, "get", counted)
    try:
        anyio.run(demo.main, Bars(Progress(console=demo.console), demo.tasks))
    finally:
        demo.stop_processes()
    assert demo.passed(), (demo.failure, demo.checks)
    kinds = demo.client.tally.client_kinds
    assert "get" not in kinds
    assert sum(kinds.values()) == demo.client.tally.client_ops
    seen = demo.client.seen
    versions = sum(task.version for task in seen)  # the terminal versions
    # every wait returned a version above the last one seen: at most one per change
    assert all(task.waits < task.version for task in seen)
    assert kinds["wait"] == sum(task.waits for task in seen)
    # a read as each wait starts, one per change that woke it, one per get_result: a
    # client polling every few milliseconds would read each idle task over and over
    assert reads <= kinds["wait"] + versions + len(seen), (reads, versions)


@pytest.mark.slow
@pytest.mark.redis
def test_a_worker_process_that_dies_makes_the_demo_fail_with_a_clear_message(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    codes: list[int] = []
    argv = ["demo", "--redis-url", redis_url, "--tasks", "400", "--workers", "2"]
    runner = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    runner.start()
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline and runner.is_alive():
        workers = [
            child
            for child in multiprocessing.active_children()
            if child.name.startswith("taskstore-demo-worker-")
        ]
        victim = workers[0] if workers else None
        time.sleep(0.01)
    assert victim is not None and victim.pid is not None, "no worker process appeared"
    os.kill(victim.pid, signal.SIGKILL)
    runner.join(60)
    out = capsys.readouterr().out
    assert not runner.is_alive(), "the demo hung after a worker died"
    assert codes == [1], out
    assert f"(pid {victim.pid}) was killed by signal 9 without reporting" in out


@pytest.mark.slow
@pytest.mark.cluster
def test_the_demo_on_a_redis_cluster_passes(
    cluster_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--redis-url", cluster_url, "--tasks", "48", "--workers", "2"]
    code = main([*argv, "--concurrency", "4", "--owners", "6"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"verification\s*│\s*passed", out), out
    assert "48 over 6 owners" in out


@pytest.mark.redis
def test_the_demo_uses_exactly_the_prefix_given_and_refuses_it_once_it_holds_demo_tasks(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--redis-url", redis_url, "--prefix", key_prefix, "--tasks", "16"]
    assert main([*argv, "--workers", "1", "--owners", "2", "--concurrency", "4"]) == 0
    assert f"--prefix {key_prefix} --owner demo-owner-0" in capsys.readouterr().out
    with redis.Redis.from_url(redis_url) as client:
        keys = {key.decode() for key in client.scan_iter(match=f"*{key_prefix}*", count=1000)}
    assert keys
    schema = KeySchema(key_prefix)
    tags = tuple(schema.tag(shard) for shard in range(schema.shards))
    assert all(key.startswith(tags) for key in keys), keys
    assert {schema.index_key("demo-owner-0"), schema.index_key("demo-owner-1")} <= keys
    assert main([*argv, "--workers", "1", "--owners", "2"]) == 2
    line = one_error_line(capsys)
    assert f"key prefix {key_prefix!r} already holds demo tasks" in line


# --- bad input, no server ---------------------------------------------------------------------

BAD_URLS = ["not-a-url", "http://x", "redis://127.0.0.1:abc/0", "redis://h/zero", "unix://"]
SUBCOMMANDS = {
    "demo": ["demo"],
    "bench": ["bench", "--quick"],
    "get": ["get", "some-task", "--owner", "alice"],
    "list": ["list", "--owner", "alice"],
    "cleanup": ["cleanup"],
    "doctor": ["doctor"],
}


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_a_malformed_url_is_one_line_and_exit_2_in_every_subcommand(
    command: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*SUBCOMMANDS[command], "--redis-url", url]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"taskstore-redis: not a Redis URL: '{shown.url(url)}'")


def test_a_url_option_redis_py_does_not_know_is_named_without_its_internals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list", "--owner", "a", "--redis-url", "redis://127.0.0.1:1/0?colour=red"]) == 2
    line = one_error_line(capsys)
    assert line.endswith("unknown option 'colour' in the URL's query")
    assert "__init__" not in line


def _port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_an_unreachable_server_is_one_line_and_exit_3_before_any_work(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://user:secret@127.0.0.1:{_port_nobody_listens_on()}/0"
    assert main([*SUBCOMMANDS[command], "--redis-url", url]) == 3
    line = one_error_line(capsys)  # no summary table, no per-coroutine repeats
    assert line.startswith(f"taskstore-redis: cannot reach Redis at {url.replace('secret', '***')}")
    assert line.endswith("nothing was sent")
    assert "secret" not in line
    assert "may or may not" not in line


def test_a_server_that_does_not_speak_redis_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer_like_http() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.recv(1024)
                peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        server = threading.Thread(target=answer_like_http, daemon=True)
        server.start()
        assert main(["cleanup", "--redis-url", f"redis://127.0.0.1:{port}/0"]) == 3
        server.join(10)
    line = one_error_line(capsys)
    assert line.startswith(f"taskstore-redis: no Redis answers at redis://127.0.0.1:{port}/0")


def test_a_bad_key_prefix_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--owner", "a", "--prefix", "a b"]) == 2
    assert "key prefix must be" in one_error_line(capsys)


def test_an_unknown_subcommand_is_one_line_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["frobnicate"]) == 2
    line = one_error_line(capsys)
    assert "invalid choice: 'frobnicate'" in line
    assert "(see taskstore-redis --help)" in line


@pytest.mark.parametrize("command", ["", *sorted(SUBCOMMANDS)])
def test_help_shows_the_exit_statuses_and_no_internal_names(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status:" in out
    assert "  3    no server" in out
    assert not re.search(r"\b_[a-z]+", out), out
    assert "<function" not in out


def test_without_rich_the_command_says_how_to_install_it_in_one_line() -> None:
    script = (
        "import sys; sys.modules['rich'] = None\n"
        "from taskstore_redis._cli.main import main\n"
        "sys.exit(main(['list', '--owner', 'alice']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "taskstore-redis: the command line needs rich: pip install 'taskstore-redis[cli]'"
    ]


def test_the_library_imports_no_command_line_dependency() -> None:
    script = (
        "import sys, taskstore_redis, taskstore_redis.asyncio, taskstore_redis.testing\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'matplotlib')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_python_m_with_a_malformed_url_prints_one_line_and_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskstore_redis", "get", "t", "--owner", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TASKSTORE_REDIS_URL": "http://x"},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "taskstore-redis: not a Redis URL: 'http://x'; expected redis://host:port/db, rediss://… "
        "(TLS) or unix:///path"
    ]


@pytest.mark.parametrize("command", ["demo", "bench"])
def test_without_a_throwaway_redis_demo_and_bench_exit_3_in_one_line_naming_the_memory_backend(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hint = "no redis-server on PATH (install it, or `pip install testcontainers[redis]`)"

    @contextmanager
    def nothing_to_start() -> Iterator[str]:
        raise RedisUnavailable(hint)
        yield "never"

    monkeypatch.delenv("TASKSTORE_REDIS_URL", raising=False)
    monkeypatch.setattr(_app, "redis_url_for_tests", nothing_to_start)
    assert main([command, "--quick" if command == "bench" else "--tasks=4"]) == 3
    line = one_error_line(capsys)
    assert line.startswith(f"taskstore-redis: no Redis: {hint}")  # as is, not eaten as markup
    assert "--backend memory" in line


@pytest.mark.redis
def test_ctrl_c_is_one_line_and_exit_130(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_inspect, "cleanup", interrupted)
    assert main(["cleanup", "--redis-url", redis_url]) == 130
    assert one_error_line(capsys) == "taskstore-redis: interrupted"


def test_ctrl_c_during_the_demo_stops_it_in_one_line_with_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(self: Demo, bars: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Demo, "main", interrupted)
    assert main(["demo", "--backend", "memory", "--tasks", "4"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "taskstore-redis: interrupted: workers stopped, stores closed\n"
    assert "taskstore-redis demo" not in captured.out  # no summary of a run cut short


# --- get, list, cleanup, doctor -------------------------------------------------------------


def alice_tasks(url: str, prefix: str, count: int, message: str | None = None) -> list[str]:
    """Create ``count`` tasks of alice; the first one asks for input with ``message``."""
    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        ids = [store.create("tools/call", owner_id="alice").task.task_id for _ in range(count)]
        if message is not None:
            store.update_status(ids[0], "input_required", message, owner_id="alice")
    return ids


@pytest.mark.redis
def test_get_json_prints_the_task_with_its_variables_and_a_message_verbatim(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "needs [/red] input :o:"  # neither markup nor an emoji code to rich
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create("tools/call", owner_id="alice").task.task_id
        store.set_variables(task_id, {"step": 2}, owner_id="alice")
        store.update_status(task_id, "input_required", message, owner_id="alice")
    common = ["--owner", "alice", "--redis-url", redis_url, "--prefix", key_prefix]
    assert main(["get", task_id, *common, "--json"]) == 0
    wire = json.loads(capsys.readouterr().out)
    assert wire["taskId"] == task_id
    assert wire["status"] == "input_required"
    assert wire["statusMessage"] == message
    assert wire["_meta"] == {"step": 2}
    assert wire["result"] is None

    assert main(["get", task_id, *common]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert message in out
    assert re.search(r"variables\s+\{\"step\":2\}", out), out


@pytest.mark.redis
def test_get_of_another_owners_task_exits_1_with_one_line_naming_the_server(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create("tools/call", owner_id="alice").task.task_id
    code = main(
        ["get", task_id, "--owner", "bob", "--redis-url", redis_url, "--prefix", key_prefix]
    )
    assert code == 1
    line = one_error_line(capsys)
    assert line.startswith(f"taskstore-redis: TaskNotFound: task not found: {task_id!r}")
    assert line.endswith(f"(at {redis_url}, key prefix {key_prefix})")


@pytest.mark.redis
def test_list_shows_whole_task_ids_in_80_columns_and_pages_with_the_printed_cursor(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = alice_tasks(redis_url, key_prefix, 3, message="waiting " * 20)
    common = ["--owner", "alice", "--redis-url", redis_url, "--prefix", key_prefix]
    assert main(["list", *common, "--limit", "2"]) == 0
    first = capsys.readouterr().out
    cursor = re.search(r"next page: --cursor (\S+)", first)
    assert cursor is not None, first
    assert main(["list", *common, "--limit", "2", "--cursor", cursor.group(1)]) == 0
    second = capsys.readouterr().out
    assert "next page" not in second
    for task_id in ids:
        assert (task_id in first) != (task_id in second), (task_id, first, second)
    assert "input_required" in first + second
    assert "waiting" in first + second
    table_lines = [line for line in (first + second).splitlines() if "next page" not in line]
    assert max(len(line) for line in table_lines) <= 80, first + second


@pytest.mark.redis
def test_list_json_is_the_page_with_its_cursor(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = alice_tasks(redis_url, key_prefix, 3)
    common = ["--owner", "alice", "--redis-url", redis_url, "--prefix", key_prefix, "--json"]
    assert main(["list", *common, "--limit", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["nextCursor"]
    assert main(["list", *common, "--cursor", first["nextCursor"]]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["nextCursor"] is None
    listed = [task["taskId"] for task in first["tasks"] + second["tasks"]]
    assert sorted(listed) == sorted(ids)
    assert all(task["status"] == "working" and not task["expired"] for task in second["tasks"])


@pytest.mark.redis
def test_an_empty_list_says_so_in_words(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["list", "--owner", "nobody", "--redis-url", redis_url, "--prefix", key_prefix]
    assert main(argv) == 0
    assert (
        capsys.readouterr().out == f"no tasks for owner 'nobody' under key prefix {key_prefix!r}\n"
    )
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"tasks": [], "nextCursor": None}


@pytest.mark.redis
def test_cleanup_purges_the_expired_tasks_of_its_prefix_only(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        expired = store.create("tools/call", owner_id="alice", ttl_ms=1).task.task_id
        live = store.create("tools/call", owner_id="alice").task.task_id
    time.sleep(0.05)
    code = main(["cleanup", "--redis-url", redis_url, "--prefix", key_prefix])
    out = capsys.readouterr().out
    assert code == 0
    assert "purged 1 expired task(s)" in out
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        with pytest.raises(ts.TaskNotFound):
            store.get(expired, owner_id="alice")
        assert store.get(live, owner_id="alice").task.task_id == live


@pytest.mark.redis
def test_the_inspecting_commands_default_to_the_url_in_the_environment(
    redis_url: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TASKSTORE_REDIS_URL", redis_url)
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create("tools/call", owner_id="alice").task.task_id
    prefix = ["--prefix", key_prefix]
    assert main(["get", task_id, "--owner", "alice", "--json", *prefix]) == 0
    assert json.loads(capsys.readouterr().out)["taskId"] == task_id
    assert main(["list", "--owner", "alice", "--json", *prefix]) == 0
    assert [t["taskId"] for t in json.loads(capsys.readouterr().out)["tasks"]] == [task_id]
    assert main(["cleanup", *prefix]) == 0
    assert "purged 0 expired task(s)" in capsys.readouterr().out
    assert main(["doctor", *prefix]) == 0
    assert capsys.readouterr().out.rstrip().endswith("healthy")


def test_the_inspecting_commands_default_to_localhost_6379_without_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A read of a task nobody has, under a prefix nobody uses: whether a Redis listens
    # on localhost:6379 or not, the one line names the URL, and nothing is written.
    monkeypatch.delenv("TASKSTORE_REDIS_URL", raising=False)
    nobody = f"nobody{uuid.uuid4().hex}"
    code = main(["get", str(uuid.uuid4()), "--owner", nobody, "--prefix", nobody])
    line = one_error_line(capsys)
    assert code in (1, 3), line  # task not found there, or nothing listens there
    assert "redis://localhost:6379" in line


@pytest.mark.parametrize(
    ("server", "mode"),
    [
        pytest.param("redis_url", "standalone", marks=pytest.mark.redis),
        pytest.param("cluster_url", "cluster", marks=pytest.mark.cluster),
    ],
)
def test_doctor_reports_a_healthy_server(
    server: str,
    mode: str,
    key_prefix: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url: str = request.getfixturevalue(server)
    code = main(["doctor", "--redis-url", url, "--prefix", key_prefix])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(rf"^server\s+(Redis|Valkey) \d+\.\d+\.\d+, {mode}$", out, re.M), out
    names = ", ".join(script.name for script in ALL_SCRIPTS)
    assert f"scripts loadable: {names}" in " ".join(out.split()), out
    assert "merge_variables" in out
    for command in ("HMGET", "EVALSHA", "SCRIPT LOAD", "ZADD", "HSET", "DEL"):
        assert re.search(rf"^allowed\s+{command} \(", out, re.M), (command, out)
    assert ("WAIT" in out) == (mode == "standalone")  # wait_replicas: standalone only
    assert "DENIED" not in out
    assert out.rstrip().endswith("healthy")


def test_doctor_takes_the_commands_to_check_from_the_scripts() -> None:
    commands = {name for script in ALL_SCRIPTS for name in _doctor.script_commands(script)}
    sent_by_the_client = {
        "EVALSHA",
        "SCRIPT|LOAD",
        "INFO",
        "WAIT",
        "SSUBSCRIBE",
        "SUNSUBSCRIBE",
        "PING",
        "SMEMBERS",  # the queue names, read by queues() and the lease sweep
    }
    assert commands == set(ACL_COMMANDS) - sent_by_the_client


@pytest.fixture(scope="module")
def acl_server() -> Iterator[tuple[RedisServer, redis.Redis]]:
    """A server of this module's own (the tests add users to it) and its default user."""
    with redis_server() as server, redis.Redis.from_url(server.url, decode_responses=True) as admin:
        yield server, admin


@pytest.mark.redis
def test_doctor_under_the_readme_acl_user_is_healthy_and_asks_nothing_it_may_not(
    acl_server: tuple[RedisServer, redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    server, admin = acl_server
    user = make_user(server, admin, ACL_RULES)
    before = set(admin.scan_iter(count=1000))
    assert main(["doctor", "--redis-url", user.url, "--prefix", user.prefix]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("healthy"), out
    assert "DENIED" not in out and "missing" not in out
    assert refusals(admin, user) == []
    assert set(admin.scan_iter(count=1000)) == before  # doctor wrote no key


@pytest.mark.redis
def test_doctor_names_each_permission_the_acl_user_lacks(
    acl_server: tuple[RedisServer, redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    rules = ACL_RULES.replace(" +zadd", "").replace(" +del", "").replace(" +info", "")
    server, admin = acl_server
    user = make_user(server, admin, rules)
    assert main(["doctor", "--redis-url", user.url, "--prefix", user.prefix]) == 1
    out = capsys.readouterr().out
    zadd = r"^DENIED\s+ZADD \(in create, compare_and_set, purge_expired, claim,$"
    assert re.search(zadd, out, re.M), out
    tail = (
        r"^\s+complete_and_claim, recover, renew, release, queue_stats,\n"
        r"\s+queue_due, delete, limits, schedule, fire\)$"
    )
    assert re.search(tail, out, re.M), out
    assert re.search(
        r"^DENIED\s+DEL \(in purge_expired, delete, limits, unschedule\)$", out, re.M
    ), out
    assert re.search(
        r"^missing\s+INFO \(only to detect cluster mode; or pass cluster=\)$", out, re.M
    ), out
    assert re.search(r"^allowed\s+HSET ", out, re.M), out
    assert f"ACL SETUSER {user.name} +zadd +del" in out
    assert out.rstrip().endswith("problems found")
    assert max(len(line) for line in out.splitlines()) <= 80, out

    assert main(["doctor", "--redis-url", user.url, "--prefix", user.prefix + "x"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^DENIED\s+HGETALL \(get\)$", out, re.M), out
    assert re.search(r"^DENIED\s+EVALSHA ", out, re.M), out


@pytest.mark.redis
def test_refused_credentials_are_one_line_and_exit_3_with_the_password_hidden(
    acl_server: tuple[RedisServer, redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    server, admin = acl_server
    user = make_user(server, admin, ACL_RULES)
    wrong = user.url.replace(user.password, "wrong-password")
    assert main(["doctor", "--redis-url", wrong, "--prefix", user.prefix]) == 3
    line = one_error_line(capsys)
    assert line.startswith(f"taskstore-redis: Redis at redis://{user.name}:***@")
    assert "refused the credentials" in line
    assert "wrong-password" not in line


@pytest.mark.slow
@pytest.mark.redis
def test_the_demo_runs_under_the_readme_acl_user_with_its_prefix(
    acl_server: tuple[RedisServer, redis.Redis], capsys: pytest.CaptureFixture[str]
) -> None:
    server, admin = acl_server
    user = make_user(server, admin, ACL_RULES)
    argv = ["demo", "--redis-url", user.url, "--prefix", user.prefix, "--tasks", "30"]
    assert main([*argv, "--workers", "2", "--concurrency", "4"]) == 0, capsys.readouterr()
    assert re.search(r"verification\s*│\s*passed", capsys.readouterr().out)
    assert refusals(admin, user) == []


def test_the_same_error_on_many_tasks_is_one_line_naming_the_first_tasks() -> None:
    args = argparse.Namespace(
        workers=2, tasks=8, owners=2, concurrency=2, timeout=5.0, seed=1, prefix=None
    )
    demo = Demo(args, None, Console())
    gone = "StoreUnavailable: Redis unavailable during get: connection refused"
    for wid, tasks in ((0, [0, 2, 4]), (1, [1, 3])):
        report = WorkerReport(wid)
        for index in tasks:
            report.error(f"task {index}: {gone}")
        report.error("deadline passed with task 9 and others not started")
        demo.coroutines.reports[wid] = report
    demo.client.tally.client_error(f"task 5: {gone}")
    assert demo.error_lines() == [
        f"{gone} (worker 0 task 0, worker 0 task 2, worker 0 task 4 and 3 more)",
        "worker 0: deadline passed with task 9 and others not started",
        "worker 1: deadline passed with task 9 and others not started",
    ]


def test_the_docs_and_help_give_the_exit_statuses_the_command_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "guides" / "command-line.md"
    in_docs = {int(n) for n in re.findall(r"^\| (\d+) \| ", page.read_text(encoding="utf-8"), re.M)}
    used = {_exit.EXIT_OK, _exit.EXIT_FAILED, _exit.EXIT_USAGE, _exit.EXIT_UNREACHABLE}
    assert in_docs == used | {_exit.EXIT_INTERRUPTED}
    assert main(["--help"]) == 0
    in_help = {int(n) for n in re.findall(r"^  (\d+) +\S", capsys.readouterr().out, re.M)}
    assert in_help == in_docs
