"""The owner quota counts tasks in progress, atomically, while processes race.

Spawned worker processes each create a task of one owner and complete it, over and
over, under a quota smaller than the number of workers. A create is refused while
the owner has ``QUOTA`` tasks in progress and succeeds as soon as a completion
(in any process) frees a place, so every worker gets all its rounds done, far past
the quota in tasks created; and whenever a create succeeded, the count of tasks in
progress it saw, checked by the worker right after, never exceeds the quota.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

import pytest

import taskstore_redis as ts
from taskstore_redis import ResourceExhausted, SecurityConfig, TaskStatus

OWNER = "quota-race"
METHOD = "tools/call"
WORKERS = 4
QUOTA = 2
ROUNDS = 25
TIMEOUT = 60.0

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def in_progress(store: ts.GenericTaskStore) -> int:
    """The owner's tasks that are not terminal, as a listing sees them."""
    page = store.list(owner_id=OWNER, limit=1000)
    return sum(1 for task in page.tasks if not task.task.status.is_terminal)


def create_and_complete(url: str, prefix: str, start: Any, results: Any) -> None:
    """Worker: ROUNDS times, create (waiting for a free place), then complete."""
    done = refused = over = 0
    others: list[str] = []
    store = ts.GenericTaskStore.from_url(
        url, prefix=prefix, security=SecurityConfig(max_tasks_per_owner=QUOTA)
    )
    try:
        store.list(owner_id=OWNER)  # connect before the race
        start.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while done < ROUNDS and time.monotonic() < deadline:
            try:
                task_id = store.create(METHOD, owner_id=OWNER).task.task_id
            except ResourceExhausted:
                refused += 1
                continue
            except Exception as exc:
                others.append(repr(exc))
                continue
            # ours is in progress until we complete it: never more than the quota
            if in_progress(store) > QUOTA:
                over += 1
            store.complete_with_result(task_id, TaskStatus.COMPLETED, None, done, owner_id=OWNER)
            done += 1
    except Exception as exc:
        others.append(repr(exc))
    finally:
        store.close()
        results.put((done, refused, over, others))


@pytest.mark.slow
def test_creates_racing_completions_across_processes_respect_the_quota_of_tasks_in_progress(
    server_url: str, key_prefix: str
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    workers = [
        context.Process(target=create_and_complete, args=(server_url, key_prefix, start, results))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=2 * TIMEOUT) for _ in workers]
    except queue.Empty:
        pytest.fail("a worker process did not report")
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    assert [others for *_, others in reports] == [[]] * WORKERS
    assert [done for done, *_ in reports] == [ROUNDS] * WORKERS  # far past the quota
    assert [over for _, _, over, _ in reports] == [0] * WORKERS
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        page = store.list(owner_id=OWNER, limit=1000)
        assert len(page.tasks) == WORKERS * ROUNDS
        assert all(task.task.status is TaskStatus.COMPLETED for task in page.tasks)
        # with everything terminal, the quota is free again
        quota_store = ts.GenericTaskStore.from_url(
            server_url, prefix=key_prefix, security=SecurityConfig(max_tasks_per_owner=QUOTA)
        )
        with quota_store:
            for _ in range(QUOTA):
                quota_store.create(METHOD, owner_id=OWNER)
            with pytest.raises(ResourceExhausted):
                quota_store.create(METHOD, owner_id=OWNER)
