"""Dedup keys and debounce hold across processes: one task per key and window.

Spawned processes submit with the same dedup keys at the same time, each from a
store of its own; every submit is one atomic script on the owner's shard, so
however they interleave each key makes one task, and each process is told that
task's id.
"""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any

import pytest

import taskstore_redis as ts
from taskstore_redis import TaskStatus

OWNER = "dedup-race"
METHOD = "tools/call"
PROCESSES = 4
KEYS = 10
ROUNDS = 20
TIMEOUT = 60.0

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def submit_all(url: str, prefix: str, debounce_ms: int | None, start: Any, results: Any) -> None:
    """Process: submit ROUNDS times for every key; report the task ids it was given."""
    given: dict[str, set[str]] = {}
    errors: list[str] = []
    store = ts.GenericTaskStore.from_url(url, prefix=prefix)
    try:
        store.queues()  # connect before the race
        start.wait(TIMEOUT)
        for n in range(ROUNDS):
            for k in range(KEYS):
                record = store.submit(
                    METHOD,
                    {"round": n},
                    owner_id=OWNER,
                    queue="burst",
                    dedup_key=f"k{k}",
                    debounce_ms=debounce_ms,
                )
                given.setdefault(f"k{k}", set()).add(record.task.task_id)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        store.close()
        results.put(({key: sorted(ids) for key, ids in given.items()}, errors))


def race(url: str, prefix: str, debounce_ms: int | None) -> dict[str, set[str]]:
    """Run PROCESSES submitters at once; the task ids given per key, over all of them."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=submit_all, args=(url, prefix, debounce_ms, start, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=2 * TIMEOUT) for _ in processes]
    except queue.Empty:
        pytest.fail("a submitting process did not report")
    finally:
        for process in processes:
            process.join(timeout=30)
    assert [errors for _, errors in reports] == [[]] * PROCESSES
    given: dict[str, set[str]] = {}
    for ids, _ in reports:
        for key, some in ids.items():
            given.setdefault(key, set()).update(some)
    return given


@pytest.mark.slow
@pytest.mark.parametrize("debounce_ms", [None, 60_000], ids=["dedup", "debounce"])
def test_concurrent_submits_from_processes_make_one_task_per_key_and_window(
    server_url: str, key_prefix: str, debounce_ms: int | None
) -> None:
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        for window in range(2):
            given = race(server_url, key_prefix, debounce_ms)
            assert sorted(given) == [f"k{k}" for k in range(KEYS)]
            assert all(len(ids) == 1 for ids in given.values()), given
            stats = store.queue_stats("burst")
            assert stats.submitted == KEYS * (window + 1)
            if debounce_ms is not None:
                assert stats.delayed == KEYS  # every burst pushed its one task on
            for ids in given.values():
                (task_id,) = ids
                record = store.get(task_id, owner_id=OWNER)
                assert record.task.status is TaskStatus.WORKING
                # the window ends: the task is ended, so the next burst makes a new one
                store.cancel(task_id, owner_id=OWNER)
