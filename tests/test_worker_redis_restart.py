"""``run_worker`` through a Redis SIGKILLed and restarted while its handlers write.

Every task has ``max_attempts=1``: an outage that cost one attempt would fail it.
The servers keep their data across the restart (AOF, ``appendfsync always``), so
what the worker wrote before the kill is there after it. The kill comes while
``CONCURRENCY`` handlers hold their leases (each has written once and waits at a
gate); once the server is dead they go on: half write through their lease, half
return at once (their completion meets the dead server). After the restart the
test reads the server's record: every task completed with its own result, on its
first attempt. Standalone Redis and a 3-primary cluster (all its nodes killed),
the blocking and the async API.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import SecurityConfig, TaskStatus
from taskstore_redis.testing import RedisServer, redis_cluster, redis_server

AOF = ("--appendonly", "yes", "--appendfsync", "always")
TASKS = 60
CONCURRENCY = 20
LEASE_MS = 60_000
"""Far longer than the outage: no lease may run out (that would be a lost lease)."""
OWNERS = [f"owner-{n}" for n in range(6)]
BOUND_S = 60.0
DOWN_S = 1.0
"""How long the servers stay down once every released handler has reached its write."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
]  # clusters killed and restarted under workers


class Gate:
    """Where the handlers meet the test: counts, and the gate they wait at."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.arrived = 0
        self.past = 0
        self.open = threading.Event()

    def arrive(self) -> None:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()
        if not self.open.wait(BOUND_S):
            raise AssertionError("the gate never opened")
        with self.cond:
            self.past += 1
            self.cond.notify_all()

    def wait_for(self, what: Callable[[], bool], failure: str) -> None:
        with self.cond:
            if not self.cond.wait_for(what, BOUND_S):
                raise AssertionError(failure)


def sync_handler(gate: Gate) -> Callable[[ts.Lease], Any]:
    def handler(lease: ts.Lease) -> dict[str, int]:
        n: int = lease.params["n"]
        lease.set_variables({"before": n})
        gate.arrive()
        if n % 2 == 0:
            lease.set_variables({"after": n})
            lease.set_status_message(f"step {n}")
        return {"n": n}

    return handler


def async_handler(gate: Gate) -> Callable[[tsa.Lease], Any]:
    async def handler(lease: tsa.Lease) -> dict[str, int]:
        n: int = lease.params["n"]
        await lease.set_variables({"before": n})
        await anyio.to_thread.run_sync(gate.arrive)
        if n % 2 == 0:
            await lease.set_variables({"after": n})
            await lease.set_status_message(f"step {n}")
        return {"n": n}

    return handler


def run_worker_in_thread(
    api: str, url: str, prefix: str, gate: Gate, stop: threading.Event
) -> tuple[threading.Thread, list[Any]]:
    """Start ``run_worker`` (the blocking or the async one) in a thread of its own."""
    options: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "lease_ms": LEASE_MS,
        "max_attempts": 1,
        "idle_wait_s": 0.2,
        "sweep_every_s": 1.0,
        "grace_s": BOUND_S,
        "handle_signals": False,
        "stop": stop,
    }
    outcome: list[Any] = []

    def blocking() -> None:
        with ts.GenericTaskStore.from_url(url, security=UNLIMITED, prefix=prefix) as store:
            outcome.append(ts.run_worker(store, sync_handler(gate), **options))

    async def main() -> None:
        async with tsa.GenericTaskStore.from_url(url, security=UNLIMITED, prefix=prefix) as store:
            outcome.append(await tsa.run_worker(store, async_handler(gate), **options))

    def target() -> None:
        try:
            if api == "sync":
                blocking()
            else:
                anyio.run(main)
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=target, name=f"worker-{api}", daemon=True)
    thread.start()
    return thread, outcome


UNLIMITED = SecurityConfig(max_tasks_per_owner=None)


def submit_all(url: str, prefix: str) -> list[tuple[str, str, int]]:
    with ts.GenericTaskStore.from_url(url, security=UNLIMITED, prefix=prefix) as store:
        tasks = []
        for n in range(TASKS):
            owner = OWNERS[n % len(OWNERS)]
            record = store.submit("tools/call", {"n": n}, owner_id=owner, max_attempts=1)
            tasks.append((owner, record.task.task_id, n))
        return tasks


def final_records(
    url: str, prefix: str, tasks: list[tuple[str, str, int]]
) -> list[tuple[int, ts.TaskRecord]]:
    """Wait until every task is terminal (polling the server); return the records."""
    deadline = time.monotonic() + BOUND_S
    with ts.GenericTaskStore.from_url(url, security=UNLIMITED, prefix=prefix) as store:
        records = []
        for owner, task_id, n in tasks:
            while True:
                try:
                    record = store.get(task_id, owner_id=owner)
                except (ts.StoreUnavailable, redis.RedisError):  # a cluster still settling
                    record = None
                if record is not None and record.task.status.is_terminal:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"task {n} is not terminal: {record}")
                time.sleep(0.05)
            records.append((n, record))
        return records


def outage_while_handlers_write(
    api: str, url: str, kill: Callable[[], None], restart: Callable[[], None]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    tasks = submit_all(url, prefix)
    gate, stop = Gate(), threading.Event()
    thread, outcome = run_worker_in_thread(api, url, prefix, gate, stop)
    try:
        gate.wait_for(
            lambda: gate.arrived >= CONCURRENCY, "the handlers never all held their leases"
        )
        kill()
        gate.open.set()
        gate.wait_for(lambda: gate.past >= CONCURRENCY, "the handlers never passed the gate")
        time.sleep(DOWN_S)  # their writes and completions meet the dead server
        restart()
        records = final_records(url, prefix, tasks)
    finally:
        stop.set()
        gate.open.set()
        thread.join(BOUND_S)
    assert not thread.is_alive(), "the worker did not stop"
    [stats] = outcome
    assert isinstance(stats, ts.WorkerStats), stats

    by_status: dict[str, list[int]] = {}
    for n, record in records:
        by_status.setdefault(record.task.status.value, []).append(n)
    assert by_status == {"completed": list(range(TASKS))}, by_status
    for n, record in records:
        assert record.task.status is TaskStatus.COMPLETED
        assert record.result == {"n": n}
        assert record.job is not None and record.job.attempt == 1, (n, record.job)
        expected = {"before": n, "after": n} if n % 2 == 0 else {"before": n}
        assert record.variables == expected, (n, record.variables)
    assert (stats.completed, stats.failed, stats.lost, stats.retried) == (TASKS, 0, 0, 0)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server(AOF) as server:
        yield server


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with redis_cluster(extra_args=AOF) as cluster:
        yield cluster


@pytest.mark.redis
@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_redis_killed_and_restarted_while_handlers_write_fails_no_task(
    server: RedisServer, api: str
) -> None:
    def kill() -> None:
        server.kill()
        assert not server.is_running()

    def restart() -> None:
        server.restart()
        with redis.Redis.from_url(server.url) as client:
            assert client.info("persistence")["aof_enabled"] == 1

    outage_while_handlers_write(api, server.url, kill, restart)


@pytest.mark.cluster
@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_cluster_killed_and_restarted_while_handlers_write_fails_no_task(
    cluster: Any, api: str
) -> None:
    def kill() -> None:
        for node in cluster.nodes:
            node.kill()
        assert not any(node.is_running() for node in cluster.nodes)

    def restart() -> None:
        for node in cluster.nodes:
            node.restart()
        cluster.wait_until_ready()

    outage_while_handlers_write(api, cluster.url, kill, restart)
