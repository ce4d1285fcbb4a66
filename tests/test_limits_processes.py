"""Limits hold across processes: four worker processes of eight slots each.

A group's ``max_concurrency=3``: the leases held, sampled from the server while the
workers run, never exceed 3, and every task completes. A queue's ``per_second=50``
(burst 5): the claims, timed by the server (a lease's first deadline less its
length), never exceed 55 in any one-second window. Standalone Redis and Redis
Cluster, with ``run_worker`` in spawned processes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import taskstore_redis as ts

OWNER = "limited"
PROCESSES = 4
SLOTS = 8
LEASE_MS = 30_000
BOUND_S = 60.0

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]

pytestmark = pytest.mark.slow


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def work(url: str, prefix: str, pause_s: float, stop: Any) -> None:
    """Process: run_worker on the queue until told to stop; each task's result is when the
    server leased it (ms)."""

    def handler(lease: ts.Lease) -> float:
        claimed_ms = lease.expires_at.timestamp() * 1000 - LEASE_MS
        time.sleep(pause_s)
        return claimed_ms

    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        ts.run_worker(
            store,
            handler,
            queue="limited",
            concurrency=SLOTS,
            lease_ms=LEASE_MS,
            stop=stop,
            handle_signals=False,
        )


@contextmanager
def workers(url: str, prefix: str, pause_s: float) -> Iterator[None]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    processes = [
        context.Process(target=work, args=(url, prefix, pause_s, stop)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        yield
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=30)
    assert [process.exitcode for process in processes] == [0] * PROCESSES


def until_done(store: ts.GenericTaskStore, count: int, sample: Any = None) -> None:
    deadline = time.monotonic() + BOUND_S
    while (stats := store.queue_stats("limited")).completed < count:
        assert time.monotonic() < deadline, stats
        if sample is not None:
            sample(stats)
        time.sleep(0.005)


def test_a_groups_concurrency_holds_across_four_worker_processes(
    server_url: str, key_prefix: str
) -> None:
    security = ts.SecurityConfig(max_tasks_per_owner=None)
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix, security=security) as store:
        store.set_limits("limited", group="g", max_concurrency=3)
        store.submit_many("tools/call", list(range(60)), owner_id=OWNER, queue="limited", group="g")
        seen: list[int] = []
        with workers(server_url, key_prefix, 0.02):
            until_done(store, 60, lambda stats: seen.append(stats.leased))
        assert max(seen) == 3  # the limit is reached, and never passed
        stats = store.queue_stats("limited")
        assert (stats.completed, stats.ready, stats.leased) == (60, 0, 0)


def test_a_queues_rate_holds_across_four_worker_processes(server_url: str, key_prefix: str) -> None:
    security = ts.SecurityConfig(max_tasks_per_owner=None)
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix, security=security) as store:
        store.set_limits("limited", per_second=50, burst=5)
        records = store.submit_many("tools/call", list(range(150)), owner_id=OWNER, queue="limited")
        with workers(server_url, key_prefix, 0.0):
            until_done(store, len(records))
        claimed = sorted(
            float(str(store.get(record.task.task_id, owner_id=OWNER).result)) for record in records
        )
    most = max(
        sum(1 for other in claimed[at:] if other < moment + 1000)
        for at, moment in enumerate(claimed)
    )
    assert most <= 55, most
    assert claimed[-1] - claimed[0] >= (150 - 5) / 50 * 1000 - 50  # the rate held them back
