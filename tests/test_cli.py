"""The ``taskstore-redis`` command: the demo on every backend, and the small subcommands."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

import taskstore_redis as ts
from taskstore_redis._cli import demo as _demo
from taskstore_redis._cli.main import main


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give rich a fixed, wide console, so that no table cell wraps whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "200")


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
    monkeypatch.setattr(_demo, "expected_sum", lambda seed, index: -1)
    code = main(["demo", "--backend", "memory", "--tasks", "30", "--workers", "2"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "check 'result' failed" in out
    assert "FAILED" in out


def test_the_demo_refuses_a_worker_count_below_one() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--backend", "memory", "--workers", "0"])
    assert exit_info.value.code == 2


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
        page = store.list("demo-owner-0", limit=100)
    assert len(page.tasks) == 120 // 8
    assert all(record.task.status.is_terminal for record in page.tasks)


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


# --- get, list, cleanup, doctor -------------------------------------------------------------


@pytest.mark.redis
def test_get_prints_the_task_as_json_with_its_variables_and_a_message_verbatim(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "needs [/red] input :o:"  # neither markup nor an emoji code to rich
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create("alice", "tools/call").task.task_id
        store.set_variables(task_id, "alice", {"step": 2})
        store.update_status(task_id, "alice", "input_required", message)
    code = main(
        ["get", task_id, "--owner", "alice", "--redis-url", redis_url, "--prefix", key_prefix]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    wire = json.loads(out)
    assert wire["taskId"] == task_id
    assert wire["status"] == "input_required"
    assert wire["statusMessage"] == message
    assert wire["_meta"] == {"step": 2}
    assert wire["result"] is None


@pytest.mark.redis
def test_get_of_another_owners_task_exits_1_with_task_not_found(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create("alice", "tools/call").task.task_id
    code = main(
        ["get", task_id, "--owner", "bob", "--redis-url", redis_url, "--prefix", key_prefix]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "TaskNotFound" in out


@pytest.mark.redis
def test_list_shows_whole_task_ids_and_pages_with_the_printed_cursor(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        ids = [store.create("alice", "tools/call").task.task_id for _ in range(3)]
        store.update_status(ids[0], "alice", "input_required", "waiting")
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


@pytest.mark.redis
def test_cleanup_purges_the_expired_tasks_of_its_prefix_only(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        expired = store.create("alice", "tools/call", ttl_ms=1).task.task_id
        live = store.create("alice", "tools/call").task.task_id
    time.sleep(0.05)
    code = main(["cleanup", "--redis-url", redis_url, "--prefix", key_prefix])
    out = capsys.readouterr().out
    assert code == 0
    assert "purged 1 expired task(s)" in out
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        with pytest.raises(ts.TaskNotFound):
            store.get(expired, "alice")
        assert store.get(live, "alice").task.task_id == live


@pytest.mark.redis
def test_doctor_reports_a_healthy_standalone_server(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["doctor", "--redis-url", redis_url, "--prefix", key_prefix])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "standalone" in out
    for name in ("create", "compare_and_set", "list_page", "purge_expired"):
        assert f"script {name}: loadable" in out
    assert f"HMGET {{{key_prefix}:0}}:t:o:t: allowed" in out
    assert out.rstrip().endswith("healthy")


def test_doctor_has_nothing_to_check_on_the_in_memory_backend(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor", "--backend", "memory"]) == 0
    assert "nothing to check" in capsys.readouterr().out


def test_without_redis_or_docker_a_command_exits_2_with_one_line_naming_the_memory_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server, no docker
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # nothing listens on port 1
    monkeypatch.delenv("TASKSTORE_REDIS_URL", raising=False)
    monkeypatch.setenv("TASKSTORE_REDIS_SERVER", "docker")  # not the embedded server either
    code = main(["list", "--owner", "x"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, lines
    assert "no Redis" in lines[0]
    assert "--backend memory" in lines[0]
    assert "testcontainers[redis]" in lines[0]  # printed as is, not eaten as markup
