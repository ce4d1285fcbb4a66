"""``taskstore-redis top`` and ``worker --metrics``: watching the queues, on a real server.

``top --once --json`` is read while a ``worker`` command (a subprocess) works on
the queue; the live view runs in a pseudo-terminal, draws a frame and quits on
Ctrl-C (SIGINT) with status 130, or on SIGTERM with status 0.

``worker --metrics`` exports with the exporter ``OTEL_METRICS_EXPORTER`` names;
``console`` (part of opentelemetry-sdk) writes each export as JSON on the worker's
stdout, the last one as the process stops, so a test reads the queue's counters
from what it printed.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskstore_redis as ts
from taskstore_redis._cli import _top
from taskstore_redis._cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.redis]  # worker commands in subprocesses

ROOT = Path(__file__).resolve().parent.parent
OWNER = "ops"
BOUND_S = 30.0
WORKER = ["--concurrency", "4", "--grace", "0.2"]

HANDLERS = textwrap.dedent(
    """
    import os
    import time


    def work(lease):
        marker = lease.params.get("wait_for")
        while marker and not os.path.exists(marker):
            time.sleep(0.02)
        if lease.params.get("fail"):
            raise RuntimeError(lease.params["fail"])
        return "done"
    """
)


@pytest.fixture
def prefix() -> str:
    return f"top{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[ts.GenericTaskStore]:
    with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as opened:
        yield opened


def start_worker(
    cwd: Path, url: str, prefix: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The ``worker`` command on queue ``mail`` running ``jobs:work``, as a subprocess."""
    (cwd / "jobs.py").write_text(HANDLERS)
    command = ["worker", "jobs:work", "--queue", "mail", *WORKER, *options]
    return subprocess.Popen(
        [sys.executable, "-m", "taskstore_redis", *command, "--redis-url", url, "--prefix", prefix],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_worker(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, as an operator stops it; what it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@pytest.fixture
def worker(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[subprocess.Popen[str]]:
    proc = start_worker(tmp_path, redis_url, prefix)
    yield proc
    stop_worker(proc)


def poll(check: Any) -> None:
    deadline = time.monotonic() + BOUND_S
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.02)


def test_once_json_shows_queues_workers_leases_and_a_failure_seen_between_readings(
    tmp_path: Path,
    redis_url: str,
    prefix: str,
    store: ts.GenericTaskStore,
    worker: subprocess.Popen[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quick = [store.submit("m", {}, owner_id=OWNER, queue="mail").task.task_id for _ in range(5)]
    poll(lambda: store.queue_stats("mail").completed == 5)
    hold, fail = tmp_path / "hold", tmp_path / "fail"
    held = store.submit("m", {"wait_for": str(hold)}, owner_id=OWNER, queue="mail").task.task_id
    failing = store.submit(
        "m", {"wait_for": str(fail), "fail": "boom"}, owner_id=OWNER, queue="mail", max_attempts=1
    ).task.task_id
    store.submit("m", {}, owner_id=OWNER, queue="later", delay_ms=3_600_000)
    poll(lambda: len(store.queue_leases("mail")) == 2)
    slept = []

    def between_readings(seconds: float) -> None:
        # the first reading saw both tasks leased: now one fails before the second
        slept.append(seconds)
        fail.touch()
        poll(lambda: store.get(failing, owner_id=OWNER).task.status is ts.TaskStatus.FAILED)

    monkeypatch.setattr(_top, "pause", between_readings)
    where = ["--redis-url", redis_url, "--prefix", prefix]
    assert main(["top", "--once", "--json", "--interval", "0.5", *where]) == 0
    hold.touch()
    frame = json.loads(capsys.readouterr().out)
    assert slept == [0.5]
    queues = {one["queue"]: one for one in frame["queues"]}
    assert set(queues) == {"mail", "later"}
    mail = queues["mail"]
    assert (mail["ready"], mail["delayed"], mail["leased"]) == (0, 0, 1)
    assert (mail["completed"], mail["failed"]) == (len(quick), 1)
    assert mail["throughput_per_min"] > 0 and mail["throughput_window_s"] > 0
    assert (queues["later"]["delayed"], queues["later"]["throughput_per_min"]) == (1, 0)
    [seen] = frame["workers"]
    assert seen["worker_id"].startswith(f"{socket.gethostname()}:")  # the worker's host:pid
    assert seen["leases"] == 1
    [task] = seen["tasks"]
    assert (task["queue"], task["task_id"], task["owner_id"]) == ("mail", held, OWNER)
    assert task["attempt"] == 1 and task["expires_in_ms"] > 0 and not task["lost"]
    [failure] = frame["failures"]
    assert (failure["queue"], failure["task_id"], failure["owner_id"]) == ("mail", failing, OWNER)
    assert failure["worker_id"] == seen["worker_id"]
    assert "boom" in failure["message"]


def test_once_draws_the_tables_for_people(
    redis_url: str,
    prefix: str,
    store: ts.GenericTaskStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    store.submit("m", {}, owner_id=OWNER, queue="mail")
    lease = store.claim("mail", timeout=5, worker_id="box:42")
    assert lease is not None
    where = ["--redis-url", redis_url, "--prefix", prefix]
    assert main(["top", "--once", "--interval", "0.05", *where]) == 0
    out = capsys.readouterr().out
    for text in ("queues", "workers", "recent failures", "mail", "box:42", lease.task_id):
        assert text in out


def test_a_queue_with_more_leases_than_listed_says_so(
    redis_url: str,
    prefix: str,
    store: ts.GenericTaskStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setattr(_top, "LEASES_PER_QUEUE", 1)
    for _ in range(2):
        store.submit("m", {}, owner_id=OWNER, queue="mail")
    assert len(store.claim_many("mail", 2, timeout=5, worker_id="box:42")) == 2
    where = ["--redis-url", redis_url, "--prefix", prefix]
    assert main(["top", "--once", "--interval", "0.05", *where]) == 0
    assert "mail: 1 of 2 leases listed" in capsys.readouterr().out
    assert main(["top", "--once", "--json", "--interval", "0.05", *where]) == 0
    [mail] = json.loads(capsys.readouterr().out)["queues"]
    assert (mail["leased"], mail["leases_listed"]) == (2, 1)


@pytest.mark.parametrize("interval", ["0", "-1", "soon", "3601"])
def test_a_bad_interval_is_one_line_and_exit_status_2(
    redis_url: str, interval: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["top", "--once", "--interval", interval, "--redis-url", redis_url]) == 2
    err = capsys.readouterr().err
    assert "--interval" in err and "Traceback" not in err


def test_json_without_once_prints_a_line_per_refresh_until_sigterm(
    redis_url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    store.submit("m", {}, owner_id=OWNER, queue="mail")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskstore_redis",
            "top",
            "--json",
            "--interval",
            "0.1",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
        ],
        env={**buffered, "PYTHONPATH": str(ROOT)},  # each line flushed as it is printed
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        frames = [json.loads(proc.stdout.readline()) for _ in range(3)]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert [[one["queue"] for one in frame["queues"]] for frame in frames] == [["mail"]] * 3
    assert frames[0]["at"] < frames[1]["at"] < frames[2]["at"]
    assert frames[0]["queues"][0]["throughput_per_min"] is None  # one reading: no rate yet
    assert frames[2]["queues"][0]["throughput_per_min"] == 0


def read_until(fd: int, wanted: list[str], seen: list[str]) -> None:
    """Read the terminal's output until every text of ``wanted`` has appeared."""
    deadline = time.monotonic() + BOUND_S
    while not all(text in "".join(seen) for text in wanted):
        assert time.monotonic() < deadline, "".join(seen)[-2000:]
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.append(os.read(fd, 65536).decode(errors="replace"))
            except OSError:  # the terminal closed: the process ended
                break


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_the_live_view_draws_frames_in_a_terminal_and_quits_on_a_signal(
    redis_url: str, prefix: str, store: ts.GenericTaskStore, sent: int, status: int
) -> None:
    store.submit("m", {}, owner_id=OWNER, queue="mail")
    where = ["--redis-url", redis_url, "--prefix", prefix]
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "140"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskstore_redis", "top", "--interval", "0.2", *where],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    seen: list[str] = []
    try:
        read_until(leader, ["taskstore-redis top", "queues", "mail", "recent failures"], seen)
        store.submit("m", {}, owner_id=OWNER, queue="news")  # a later refresh shows it
        read_until(leader, ["news"], seen)
        proc.send_signal(sent)
        assert proc.wait(BOUND_S) == status
        while select.select([leader], [], [], 0.2)[0]:  # what it wrote on its way out
            try:
                seen.append(os.read(leader, 65536).decode(errors="replace"))
            except OSError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    out = "".join(seen)
    assert "\x1b[" in out  # drawn for a terminal (escape sequences), refreshed in place
    assert "Traceback" not in out


# --- worker --metrics ----------------------------------------------------------------------


def exports(out: str) -> list[dict[str, Any]]:
    """The JSON documents the console exporter printed among the command's other output."""
    decoder = json.JSONDecoder()
    found = []
    at = out.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(out, at)
        except json.JSONDecodeError:
            at = out.find("{", at + 1)
            continue
        if isinstance(value, dict) and "resource_metrics" in value:
            found.append(value)
        at = out.find("{", end)
    return found


def points(export: dict[str, Any], queue: str) -> dict[str, Any]:
    """Metric name -> its data point for ``queue`` (the value, or the histogram point)."""
    found: dict[str, Any] = {}
    for resource in export["resource_metrics"]:
        for scope in resource["scope_metrics"]:
            for metric in scope["metrics"]:
                for point in metric["data"]["data_points"]:
                    if point["attributes"].get("queue") != queue:
                        continue
                    key = metric["name"]
                    if "outcome" in point["attributes"]:
                        key += f"[{point['attributes']['outcome']}]"
                    found[key] = point.get("value", point)
    return found


def test_worker_metrics_export_the_queue_counters_durations_and_gauges(
    tmp_path: Path, redis_url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    env = {"OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "300"}
    proc = start_worker(tmp_path, redis_url, prefix, "--metrics", env=env)
    try:
        ids = [store.submit("m", {}, owner_id=OWNER, queue="mail").task.task_id for _ in range(2)]
        ids.append(
            store.submit(
                "m", {"fail": "boom"}, owner_id=OWNER, queue="mail", max_attempts=1
            ).task.task_id
        )
        poll(lambda: all(store.get(i, owner_id=OWNER).task.status.is_terminal for i in ids))
        time.sleep(1.0)  # a periodic export while the worker runs (the gauges are read then)
    finally:
        out, err = stop_worker(proc)
    assert proc.returncode == 0, err
    found = exports(out)
    assert len(found) >= 2, out[-2000:]
    resource = found[-1]["resource_metrics"][0]["resource"]["attributes"]
    assert resource["service.name"] == "taskstore-redis-worker"
    assert ":" in resource["service.instance.id"]  # host:pid
    last = points(found[-1], "mail")
    assert last["taskstore.queue.claimed"] == 3
    assert last["taskstore.queue.completed"] == 2
    assert last["taskstore.queue.failed"] == 1
    assert last["taskstore.queue.handler.duration[completed]"]["count"] == 2
    assert last["taskstore.queue.handler.duration[failed]"]["count"] == 1
    gauges = [points(one, "mail") for one in found]
    assert any(
        (one.get("taskstore.queue.ready"), one.get("taskstore.queue.leased")) == (0, 0)
        for one in gauges
    )


def test_worker_metrics_with_an_exporter_not_installed_is_one_line_and_exit_status_2(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "no-such-exporter")
    status = main(["worker", "json:dumps", "--metrics", "--redis-url", redis_url])
    err = capsys.readouterr().err
    assert status == 2
    assert "no OpenTelemetry metrics exporter 'no-such-exporter'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
