"""Each tick fires once, however many schedulers run: three processes, one schedule.

Three spawned processes run ``run_scheduler`` on one store; an ``every_ms=200`` schedule
lives for three seconds (from ``schedule`` to ``unschedule``): it submits 15 ± 1 tasks,
no two for the same tick. Standalone Redis and Redis Cluster.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

import taskstore_redis as ts

OWNER = "ops"
PROCESSES = 3
READY_S = 60.0

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]

pytestmark = pytest.mark.slow


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def schedule_in_process(url: str, prefix: str, ready: Any, stop: Any) -> None:
    """Process: run_scheduler until told to stop."""
    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        store.schedules()  # connected
        ready.release()
        ts.run_scheduler(store, stop=stop)


def test_three_schedulers_fire_each_tick_of_three_seconds_once(
    server_url: str, key_prefix: str
) -> None:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    ready = context.Semaphore(0)
    processes = [
        context.Process(target=schedule_in_process, args=(server_url, key_prefix, ready, stop))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            assert ready.acquire(timeout=READY_S)
        time.sleep(0.5)  # each scheduler is subscribed to changes by now
        with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
            store.schedule(
                "fast", owner_id=OWNER, request_method="tick", every_ms=200, queue="ticks"
            )
            time.sleep(3.0)
            assert store.unschedule("fast")
            ticks = []
            while (lease := store.claim("ticks", timeout=0)) is not None:
                job = store.get(lease.task_id, owner_id=OWNER).job
                assert job is not None and job.scheduled_for is not None
                ticks.append(job.scheduled_for.timestamp() * 1000)
                lease.complete(ts.TaskStatus.COMPLETED, None, "done")
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    assert len(set(ticks)) == len(ticks), "a tick fired twice"
    assert all(tick % 200 == 0 for tick in ticks)
    assert 14 <= len(ticks) <= 16, sorted(ticks)
