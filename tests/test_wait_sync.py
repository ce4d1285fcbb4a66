"""Blocking waits in threads, on every backend: the twin of tests/test_wait_async.py.

The blocking store's waiters share one subscription per process through a
listener thread; these tests check that many threads waiting at once are all
woken and leave nothing registered, with hooks instead of sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import pytest

import taskstore_redis as ts
from taskstore_redis import TaskKey, TaskStatus, WaitTimeout

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"
GUARD = 30.0


class HookedWatch:
    """A backend watch that calls ``on_subscribed`` once the inner watch is in place."""

    def __init__(self, inner: ts.TaskWatch, on_subscribed: Callable[[], object]) -> None:
        self.inner = inner
        self.on_subscribed = on_subscribed

    def __enter__(self) -> HookedWatch:
        self.inner.__enter__()
        self.on_subscribed()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.inner.__exit__(exc_type, exc, tb)

    def wait(self, timeout: float | None) -> None:
        self.inner.wait(timeout)


def on_subscribed(
    monkeypatch: pytest.MonkeyPatch, store: ts.GenericTaskStore, hook: Callable[[], object]
) -> None:
    backend: Any = store.backend
    original = backend.watch
    monkeypatch.setattr(backend, "watch", lambda key: HookedWatch(original(key), hook))


def registrations(store: ts.GenericTaskStore) -> int:
    backend: Any = store.backend
    count: int = backend.watch_registrations()
    return count


class Counter:
    """Counts subscriptions across threads; ``all_in`` is set when ``expected`` are in place."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lock = threading.Lock()
        self.all_in = threading.Event()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1
            if self.count == self.expected:
                self.all_in.set()


def test_many_threads_waiting_on_one_task_are_all_woken_by_another_store(
    sync_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = 24
    waiter_store, writer = sync_make_store(), sync_make_store()
    task_id = writer.create(METHOD, owner_id=OWNER).task.task_id
    counter = Counter(threads)
    on_subscribed(monkeypatch, waiter_store, counter)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [
            pool.submit(waiter_store.wait_for_result, task_id, owner_id=OWNER, timeout=GUARD)
            for _ in range(threads)
        ]
        assert counter.all_in.wait(GUARD)
        writer.complete_with_result(task_id, TaskStatus.COMPLETED, None, {"r": 7}, owner_id=OWNER)
        assert [future.result(GUARD) for future in futures] == [{"r": 7}] * threads
    assert registrations(waiter_store) == 0


def test_threads_waiting_on_many_tasks_each_get_their_own(
    sync_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = 24
    waiter_store, writer = sync_make_store(), sync_make_store()
    task_ids = [writer.create(METHOD, owner_id=OWNER).task.task_id for _ in range(tasks)]
    counter = Counter(tasks)
    on_subscribed(monkeypatch, waiter_store, counter)
    with ThreadPoolExecutor(max_workers=tasks) as pool:
        futures = [
            pool.submit(waiter_store.wait, task_id, owner_id=OWNER, timeout=GUARD)
            for task_id in task_ids
        ]
        assert counter.all_in.wait(GUARD)
        for task_id in task_ids:
            writer.set_variables(task_id, {"id": task_id}, owner_id=OWNER)
        records = [future.result(GUARD) for future in futures]
    assert [record.variables for record in records] == [{"id": task_id} for task_id in task_ids]
    assert registrations(waiter_store) == 0


def test_a_write_between_the_subscription_and_the_first_read_is_seen(
    sync_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, writer = sync_make_store(), sync_make_store()
    task_id = writer.create(METHOD, owner_id=OWNER).task.task_id
    on_subscribed(monkeypatch, waiter_store, lambda: writer.cancel(task_id, owner_id=OWNER))
    record = waiter_store.wait(task_id, owner_id=OWNER, timeout=GUARD)
    assert record.task.status is TaskStatus.CANCELLED


def test_a_notice_that_comes_between_a_read_and_the_wait_is_not_lost(
    sync_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, writer = sync_make_store(), sync_make_store()
    task_id = writer.create(METHOD, owner_id=OWNER).task.task_id
    backend: Any = waiter_store.backend
    original_get = backend.get
    reads: list[int] = []

    def get_then_write(key: TaskKey) -> Any:
        stored = original_get(key)
        reads.append(1)
        if len(reads) == 1:
            writer.set_variables(task_id, {"late": True}, owner_id=OWNER)
        return stored

    monkeypatch.setattr(backend, "get", get_then_write)
    record = waiter_store.wait(task_id, owner_id=OWNER, after_version=1, timeout=GUARD)
    assert record.variables == {"late": True}


def test_waits_that_time_out_in_many_threads_leave_nothing_registered(
    sync_make_store: StoreFactory,
) -> None:
    store = sync_make_store()
    task_ids = [store.create(METHOD, owner_id=OWNER).task.task_id for _ in range(5)]

    def wait(n: int) -> str:
        try:
            store.wait(task_ids[n % 5], owner_id=OWNER, timeout=0.001)
        except WaitTimeout:
            return "timeout"
        return "returned"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(wait, range(2_000)))
    assert outcomes == ["timeout"] * 2_000
    assert registrations(store) == 0
