"""Variable merges from many processes into one task: they never conflict and never get lost.

Four spawned worker processes, each with eight threads on one blocking store (or 32
coroutines on one async store), merge distinct keys into the same task, all released
together by a barrier. Every merge is one script call with no read and no retry: the
test counts the commands the task's server receives (MONITOR) and expects exactly one
``EVALSHA`` per merge, no ``ConcurrentModification``, and every key in the task.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
import redis

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import ConcurrentModification
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import ALL_SCRIPTS
from taskstore_redis.backend import TaskKey

from .redis_monitor import monitored

pytestmark = pytest.mark.slow  # many processes

OWNER = "merge-stress"
METHOD = "tools/call"
PROCESSES = 4
THREADS = 8
COROUTINES = 32
SHAPES = {"threads": (THREADS, 10, 32), "coroutines": (COROUTINES, 2, 40)}
"""Per mode: callers per process, merges per caller, keys per merge (10,240 keys in all).
Each merge also gets the whole task back, so fewer, larger merges keep the test quick."""
CONNECTION_SETUP = frozenset({"HELLO", "AUTH", "CLIENT SETINFO", "SELECT"})
"""What a new connection sends before its first command."""
TIMEOUT = 60.0
"""Seconds any wait on a worker may take before the test gives up."""

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def merge_keys(process: int, caller: int, merge: int, size: int) -> dict[str, int]:
    """The distinct keys (and values) of one merge of ``size`` keys."""
    first = merge * size
    return {f"p{process}.c{caller}.k{first + n}": first + n for n in range(size)}


# --- in the worker processes ----------------------------------------------------------


def _tally(outcomes: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def sync_worker(
    url: str,
    prefix: str,
    task_id: str,
    process: int,
    merges_each: int,
    size: int,
    ready: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[dict[str, int]],
) -> None:
    """Eight threads on one blocking store, each merging its own keys."""
    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        store.get(task_id, owner_id=OWNER)  # connect (and learn the cluster layout) before the log

        def caller(index: int) -> list[str]:
            outcomes = []
            for merge in range(merges_each):
                try:
                    store.set_variables(
                        task_id, merge_keys(process, index, merge, size), owner_id=OWNER
                    )
                    outcomes.append("applied")
                except ConcurrentModification:
                    outcomes.append("ConcurrentModification")
                except Exception as exc:  # reported, not raised: it must reach the parent
                    outcomes.append(f"{type(exc).__name__}: {exc}")
            return outcomes

        ready.wait(TIMEOUT)  # connected
        ready.wait(TIMEOUT)  # the log runs: go
        with ThreadPoolExecutor(THREADS) as pool:
            outcomes = [o for part in pool.map(caller, range(THREADS)) for o in part]
    results.put(_tally(outcomes))


def async_worker(
    url: str,
    prefix: str,
    task_id: str,
    process: int,
    merges_each: int,
    size: int,
    ready: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[dict[str, int]],
) -> None:
    """32 coroutines on one async store, each merging its own keys."""

    async def main() -> list[str]:
        outcomes: list[str] = []
        async with tsa.GenericTaskStore.from_url(url, prefix=prefix) as store:
            await store.get(task_id, owner_id=OWNER)

            async def caller(index: int) -> None:
                for merge in range(merges_each):
                    try:
                        await store.set_variables(
                            task_id, merge_keys(process, index, merge, size), owner_id=OWNER
                        )
                        outcomes.append("applied")
                    except ConcurrentModification:
                        outcomes.append("ConcurrentModification")
                    except Exception as exc:  # reported, not raised
                        outcomes.append(f"{type(exc).__name__}: {exc}")

            await anyio.to_thread.run_sync(ready.wait, TIMEOUT)  # connected
            await anyio.to_thread.run_sync(ready.wait, TIMEOUT)  # the log runs: go
            async with anyio.create_task_group() as group:
                for index in range(COROUTINES):
                    group.start_soon(caller, index)
        return outcomes

    results.put(_tally(anyio.run(main)))


# --- in the test process --------------------------------------------------------------


@contextmanager
def task_node(url: str, keys: KeySchema, task: TaskKey) -> Iterator[str]:
    """The URL of the server that holds ``task`` (a node of a cluster), scripts loaded."""
    with redis.Redis.from_url(url) as probe:
        clustered = bool(probe.info("cluster").get("cluster_enabled"))
    if clustered:
        with redis.RedisCluster.from_url(url) as cluster:
            node = cluster.get_node_from_key(keys.task_key(task))
            node_url = f"redis://{node.host}:{node.port}"
    else:
        node_url = url
    with redis.Redis.from_url(node_url) as client:
        for script in ALL_SCRIPTS:
            client.script_load(script.source)
    yield node_url


def run_workers(
    url: str, prefix: str, task_id: str, target: Any, merges_each: int, size: int
) -> tuple[list[dict[str, int]], list[str]]:
    """Start the workers, start the log once they are connected, release them; collect."""
    keys = KeySchema(prefix)
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(PROCESSES + 1)
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    workers = [
        context.Process(
            target=target, args=(url, prefix, task_id, n, merges_each, size, ready, results)
        )
        for n in range(PROCESSES)
    ]
    with task_node(url, keys, TaskKey(OWNER, task_id)) as node_url:
        for worker in workers:
            worker.start()
        try:
            ready.wait(TIMEOUT)  # every worker has connected
            with monitored(node_url) as log:
                ready.wait(TIMEOUT)
                reports = [results.get(timeout=TIMEOUT) for _ in workers]
                commands = log.commands
        except queue.Empty:
            pytest.fail("a worker process did not report")
        finally:
            for worker in workers:
                worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    return reports, commands


def check(
    url: str,
    prefix: str,
    task_id: str,
    reports: list[dict[str, int]],
    callers: int,
    merges_each: int,
    size: int,
    commands: list[str],
) -> None:
    merges = PROCESSES * callers * merges_each
    assert sum(report.get("applied", 0) for report in reports) == merges
    assert all(set(report) == {"applied"} for report in reports), reports  # nothing else
    # one command per merge: no read, no retry (connections that threads open meanwhile
    # say hello first, and that is all they add)
    data_commands = [name for name in commands if name not in CONNECTION_SETUP]
    assert data_commands == ["EVALSHA"] * merges
    with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
        final = store.get(task_id, owner_id=OWNER)
    expected = {
        key: value
        for process in range(PROCESSES)
        for caller in range(callers)
        for merge in range(merges_each)
        for key, value in merge_keys(process, caller, merge, size).items()
    }
    assert len(expected) >= 10_000
    assert final.variables == expected  # nothing lost
    assert final.version == 1 + merges


@pytest.mark.parametrize("mode", ["threads", "coroutines"])
def test_merges_of_distinct_keys_from_many_processes_never_conflict_nor_get_lost(
    server_url: str, key_prefix: str, mode: str
) -> None:
    callers, merges_each, size = SHAPES[mode]
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
    target = sync_worker if mode == "threads" else async_worker
    reports, commands = run_workers(server_url, key_prefix, task_id, target, merges_each, size)
    check(server_url, key_prefix, task_id, reports, callers, merges_each, size, commands)
