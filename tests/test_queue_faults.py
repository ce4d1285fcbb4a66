"""Work queues under faults: workers killed, paused, stopped; tasks cancelled; Redis restarted.

Workers are real processes (``run_worker`` in a ``python -c`` child) on real
servers: a standalone Redis, and a 3-primary cluster where the fault does not
need one server. Counts and leases are small so each test stays well under a
minute; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

import taskstore_redis as ts
from taskstore_redis import LeaseLost, SecurityConfig, TaskStatus
from taskstore_redis.testing import redis_server

pytestmark = pytest.mark.slow  # workers killed and paused, servers restarted

ROOT = Path(__file__).resolve().parent.parent
OWNERS = [f"owner-{n}" for n in range(8)]
UNLIMITED = SecurityConfig(max_tasks_per_owner=None)
BOUND_S = 45.0

WORKER = textwrap.dedent(
    """
    import itertools, json, os, sys, threading, time
    import taskstore_redis as ts

    url, prefix, lease_ms, concurrency, pause_s, grace_s, stall_after = sys.argv[1:8]
    pid = os.getpid()
    calls = itertools.count(1)

    def handler(lease):
        lease.set_variables({"by": pid})
        if 0 <= int(stall_after) < next(calls):  # stuck mid-task, renewing, until killed
            lease.set_variables({"stalled": pid})
            threading.Event().wait()
        time.sleep(float(pause_s))
        return {"by": pid, "attempt": lease.attempt}

    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        print("ready", flush=True)
        stats = ts.run_worker(
            store, handler, lease_ms=int(lease_ms), concurrency=int(concurrency),
            grace_s=float(grace_s), idle_wait_s=0.2, sweep_every_s=0.5,
            retry_base_ms=20, retry_max_ms=200, worker_id=f"worker-{pid}",
        )
    print(json.dumps({"pid": pid, "completed": stats.completed, "lost": stats.lost,
                      "released": stats.released}), flush=True)
    """
)


class Worker:
    """A worker process: ``run_worker`` with a handler that records its pid on the task.

    With ``stall_after`` (>= 0) every handler call after that many gets stuck: it marks
    its task ``stalled`` and never returns, its lease renewed all along.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        lease_ms: int = 1000,
        concurrency: int = 8,
        pause_s: float = 0.002,
        grace_s: float = 5.0,
        stall_after: int = -1,
    ) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [url, prefix, lease_ms, concurrency, pause_s, grace_s, stall_after]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", self.proc.stderr

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def worker_id(self) -> str:
        return f"worker-{self.pid}"

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> dict[str, int]:
        """SIGTERM, then what it reported."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=BOUND_S)
        assert self.proc.returncode == 0, err
        report: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@contextmanager
def workers(count: int, url: str, prefix: str, **options: float) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for _ in range(count):
            started.append(Worker(url, prefix, **options))  # type: ignore[arg-type]
        yield started
    finally:
        for worker in started:
            worker.close()


def submit(store: ts.GenericTaskStore, count: int, **options: object) -> list[tuple[str, str]]:
    tasks = []
    for n in range(count):
        owner = OWNERS[n % len(OWNERS)]
        record = store.submit("m", {"n": n}, owner_id=owner, **options)  # type: ignore[arg-type]
        tasks.append((owner, record.task.task_id))
    return tasks


def final(store: ts.GenericTaskStore, owner: str, task_id: str) -> ts.TaskRecord:
    record = store.get(task_id, owner_id=owner)
    deadline = time.monotonic() + BOUND_S
    while not record.task.status.is_terminal:
        left = deadline - time.monotonic()
        assert left > 0, f"task {task_id} still {record.task.status.value}: {record.job}"
        record = store.wait(task_id, owner_id=owner, after_version=record.version, timeout=left)
    return record


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def url(request: pytest.FixtureRequest) -> str:
    name = "redis_url" if request.param == "redis" else "cluster_url"
    value: str = request.getfixturevalue(name)
    return value


@pytest.fixture
def prefix() -> str:
    return f"qf{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(url: str, prefix: str) -> Iterator[ts.GenericTaskStore]:
    with ts.GenericTaskStore.from_url(url, prefix=prefix, security=UNLIMITED) as opened:
        yield opened


@pytest.mark.redis
def test_a_worker_killed_mid_run_leaves_every_task_completed_exactly_once_by_the_others(
    url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    tasks = submit(store, 2000)
    stall_after, concurrency = 50, 8
    stuck_in_victim: set[str] = set()  # every task seen stuck there: it can never complete it

    def victim_stuck_on_all_its_slots() -> bool:
        held = [i for i in store.queue_leases() if i.worker_id == victim.worker_id]
        stuck = {
            i.task_id
            for i in held
            if store.get(i.task_id, owner_id=i.owner_id).variables.get("stalled")
        }
        stuck_in_victim.update(stuck)
        return len(stuck) == len(held) == concurrency

    with (
        workers(1, url, prefix, lease_ms=1000, stall_after=stall_after) as [victim],
        workers(3, url, prefix, lease_ms=1000, pause_s=0.002) as others,
    ):
        # the victim completes its first tasks, then gets stuck in every slot: it is killed
        # holding exactly those leases, mid-task, while the others work on
        wait_for(victim_stuck_on_all_its_slots, "the victim never got stuck on all its slots")
        victim.signal(signal.SIGKILL)
        records = [final(store, owner, task_id) for owner, task_id in tasks]
        reports = [worker.stop() for worker in others]
    assert len(stuck_in_victim) >= concurrency
    assert {r.task.status for r in records} == {TaskStatus.COMPLETED}
    stats = store.queue_stats()
    assert (stats.completed, stats.leased, stats.ready, stats.given_up) == (2000, 0, 0, 0)
    by_victim = sum(1 for r in records if r.result["by"] == victim.pid)
    assert 0 < by_victim <= stall_after
    assert sum(report["completed"] for report in reports) + by_victim == 2000
    # no task completed twice: every completion is one task's only one
    taken_over = [r for r in records if r.job is not None and r.job.attempt > 1]
    assert {r.task.task_id for r in taken_over} >= stuck_in_victim
    assert stats.recovered >= len(taken_over)
    for record in taken_over:
        assert record.result["by"] != victim.pid
        assert record.result["attempt"] == record.job.attempt  # type: ignore[union-attr]


@pytest.mark.redis
def test_a_worker_killed_holding_a_parent_leaves_the_child_to_run_once_after_its_retry(
    url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    owner = OWNERS[0]
    parent = store.submit("m", {"n": "parent"}, owner_id=owner)
    child = store.submit("m", {"n": "child"}, owner_id=owner, after=[parent.task.task_id])
    with workers(1, url, prefix, lease_ms=1000, stall_after=0) as [victim]:
        wait_for(
            lambda: "stalled" in store.get(parent.task.task_id, owner_id=owner).variables,
            "the victim never took the parent",
        )
        victim.signal(signal.SIGKILL)  # holding the parent, mid-task
        victim.proc.wait()
    assert store.get(child.task.task_id, owner_id=owner).job.state == "waiting"  # type: ignore[union-attr]
    with workers(1, url, prefix, lease_ms=1000) as [rescuer]:
        done_parent = final(store, owner, parent.task.task_id)
        done_child = final(store, owner, child.task.task_id)
        rescuer.stop()
    assert done_parent.task.status is TaskStatus.COMPLETED
    assert done_parent.result == {"by": rescuer.pid, "attempt": 2}
    assert done_child.task.status is TaskStatus.COMPLETED
    assert done_child.result == {"by": rescuer.pid, "attempt": 1}  # claimed once
    assert done_child.job is not None and done_child.job.attempt == 1
    assert store.queue_stats().completed == 2


@pytest.mark.redis
def test_a_worker_paused_past_its_lease_loses_it_and_the_new_holders_result_stays(
    url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    [(owner, task_id)] = submit(store, 1)
    with workers(1, url, prefix, lease_ms=500, pause_s=1.5) as [paused]:
        wait_for(
            lambda: store.get(task_id, owner_id=owner).variables.get("by") == paused.pid,
            "the worker never took the task",
        )
        paused.signal(signal.SIGSTOP)  # renewals stop; the lease runs out
        lease = store.claim(lease_ms=30_000, timeout=BOUND_S)
        assert lease is not None and lease.task_id == task_id and lease.attempt == 2
        lease.complete(TaskStatus.COMPLETED, None, {"by": "new holder"})
        paused.signal(signal.SIGCONT)  # resumed: its renewal or its complete is refused (LeaseLost)
        wait_for(lambda: store.queue_stats().claimed == 2, "the counters lost a claim")
        time.sleep(2.0)  # its handler's sleep ends meanwhile
        report = paused.stop()
    assert report["lost"] == 1 and report["completed"] == 0
    assert final(store, owner, task_id).result == {"by": "new holder"}


@pytest.mark.redis
def test_a_client_cancelling_a_leased_task_makes_the_holders_next_write_raise_lease_lost(
    store: ts.GenericTaskStore,
) -> None:
    [(owner, task_id)] = submit(store, 1)
    lease = store.claim(timeout=0)
    assert lease is not None
    store.cancel(task_id, owner_id=owner)
    for write in (
        lambda: lease.renew(),
        lambda: lease.set_variables({"late": True}),
        lambda: lease.complete(TaskStatus.COMPLETED, None, "late"),
    ):
        with pytest.raises(LeaseLost) as lost:
            write()
        assert lost.value.reason == "cancelled"
    record = store.get(task_id, owner_id=owner)
    assert record.task.status is TaskStatus.CANCELLED and "late" not in record.variables


@pytest.mark.redis
def test_an_always_raising_handler_fails_after_max_attempts_with_delays_between(
    store: ts.GenericTaskStore,
) -> None:
    [(owner, task_id)] = submit(store, 1, max_attempts=3)
    started: list[float] = []

    def broken(lease: ts.Lease) -> None:
        started.append(time.monotonic())
        raise OSError(f"disk full on attempt {lease.attempt}")

    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(
            ts.run_worker, store, broken, stop=stop, retry_base_ms=200, idle_wait_s=0.1
        )
        record = store.wait(task_id, owner_id=owner, until_terminal=True, timeout=BOUND_S)
        stop.set()
        done.result(timeout=BOUND_S)
    assert record.task.status is TaskStatus.FAILED
    assert record.task.status_message == "disk full on attempt 3"
    # released with a backoff after attempts 1 and 2 (at least half of 200 and 400 ms, which
    # the server holds the task back for), failed by the worker itself after attempt 3
    assert store.queue_stats().released == 2
    assert len(started) == 3
    assert started[1] - started[0] >= 0.1 and started[2] - started[1] >= 0.2, started


@pytest.mark.redis
def test_redis_killed_and_restarted_under_load_workers_resume_and_no_task_is_lost() -> None:
    with (
        redis_server(("--appendonly", "yes", "--appendfsync", "always")) as server,
        ts.GenericTaskStore.from_url(server.url, prefix="restart", security=UNLIMITED) as store,
    ):
        tasks = submit(store, 400)
        with workers(2, server.url, "restart", lease_ms=2000, pause_s=0.01) as started:
            wait_for(lambda: store.queue_stats().completed >= 50, "no progress before the kill")
            server.kill()
            time.sleep(1.0)
            server.restart()
            records = [final(store, owner, task_id) for owner, task_id in tasks]
            for worker in started:
                worker.stop()
        assert {r.task.status for r in records} == {TaskStatus.COMPLETED}
        assert store.queue_stats().leased == 0


@pytest.mark.redis
def test_a_worker_stopped_by_sigterm_leaves_no_task_leased(
    url: str, prefix: str, store: ts.GenericTaskStore
) -> None:
    tasks = submit(store, 40)
    with workers(1, url, prefix, concurrency=8, pause_s=3.0, grace_s=0.3) as [worker]:
        wait_for(lambda: store.queue_stats().leased == 8, "the worker did not fill its slots")
        report = worker.stop()
    stats = store.queue_stats()
    assert stats.leased == 0
    assert report["released"] == 8
    assert stats.ready == 40 - report["completed"]
    assert all(
        store.get(task_id, owner_id=owner).task.status is TaskStatus.WORKING
        for owner, task_id in tasks
    )
