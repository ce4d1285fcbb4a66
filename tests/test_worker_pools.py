"""The worker-pool recipe: one store per process from a URL, threads sharing a store, fork.

A process pool's initializer builds one blocking store per worker process with
``GenericTaskStore.from_url`` and keeps it in a module-level global; the settings
travel to the workers by pickling. Threads of one process share one store. A
store built from a URL that a forked child inherits reconnects in the child and
never touches the parent's socket; a store that wraps a client of the caller's
refuses to work in the child and says what to do instead.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeAlias

import pytest
import redis

import taskstore_redis as ts
from taskstore_redis import (
    AnonymousAccessDenied,
    ConcurrentModification,
    InvalidArgument,
    InvalidTransition,
    NoResult,
    NotReady,
    ResourceExhausted,
    SecurityConfig,
    StorageCorrupted,
    StoreConfig,
    StoreUnavailable,
    TaskExpired,
    TaskNotFound,
    TaskRecord,
    TaskStoreError,
    VariableSizeExceeded,
    WaitTimeout,
)

OWNER = "pool-owner"
METHOD = "tools/call"
TIMEOUT = 60.0
"""Seconds any wait on a worker may take before the test gives up."""
LIFECYCLES = 12

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]
START_METHODS = ["fork", "spawn"]

CONFIG = StoreConfig(cas_retries=24, default_ttl_ms=600_000, record_cache_size=64)
SECURITY = SecurityConfig(max_tasks_per_owner=500)

Report: TypeAlias = "multiprocessing.queues.Queue[Any]"


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
def reader(server_url: str, key_prefix: str) -> Iterator[ts.GenericTaskStore]:
    """The test process's own store, to check what the workers stored."""
    with ts.GenericTaskStore.from_url(
        server_url, prefix=key_prefix, config=CONFIG, security=SECURITY
    ) as store:
        yield store


# --- in the pool's worker processes ---------------------------------------------------

_STORE: ts.GenericTaskStore | None = None
_INITIALIZED = 0


def init_worker(url: str, prefix: str, config: StoreConfig, security: SecurityConfig) -> None:
    """Pool initializer: build this process's one store."""
    global _STORE, _INITIALIZED
    _STORE = ts.GenericTaskStore.from_url(url, prefix=prefix, config=config, security=security)
    _INITIALIZED += 1


def worker_store() -> ts.GenericTaskStore:
    assert _STORE is not None, "init_worker did not run in this process"
    return _STORE


def run_lifecycle(owner: str, index: int) -> tuple[int, int, StoreConfig, TaskRecord]:
    """Create a task, take it through input_required and back, merge variables, complete it.

    Returns this process's id, how often its initializer ran, the settings its
    store got, and the completed record.
    """
    store = worker_store()
    task_id = store.create(METHOD, owner_id=owner).task.task_id
    store.update_status(task_id, "input_required", f"question {index}", owner_id=owner)
    store.set_variables(task_id, {"index": index, "pid": os.getpid()}, owner_id=owner)
    store.update_status(task_id, "working", owner_id=owner)
    record = store.complete_with_result(
        task_id, "completed", f"done {index}", {"square": index * index}, owner_id=owner
    )
    return os.getpid(), _INITIALIZED, store.config, record


def complete_again(owner: str, task_id: str) -> None:
    """Complete a task that is already completed: raises InvalidTransition in the worker."""
    worker_store().complete_with_result(task_id, "failed", None, {"late": True}, owner_id=owner)


def check_lifecycles(
    reader: ts.GenericTaskStore, returned: list[tuple[int, int, StoreConfig, TaskRecord]]
) -> None:
    """Every lifecycle ran in a worker process and the parent reads back what it wrote."""
    assert len(returned) == LIFECYCLES
    for index, (pid, initialized, config, record) in enumerate(returned):
        assert pid != os.getpid()
        assert initialized == 1, "the initializer must run exactly once per process"
        assert config == CONFIG
        stored = reader.get(record.task.task_id, owner_id=OWNER)
        assert stored == record, "the record returned by the worker is the stored one"
        assert stored.task.status == "completed"
        assert stored.task.status_message == f"done {index}"
        assert stored.result == {"square": index * index}
        assert stored.variables == {"index": index, "pid": pid}
        assert stored.version == 5
        assert reader.get_result(record.task.task_id, owner_id=OWNER) == {"square": index * index}
    page = reader.list(owner_id=OWNER, limit=100)
    assert page.next_cursor is None
    assert sorted(t.task.task_id for t in page.tasks) == sorted(
        r.task.task_id for *_, r in returned
    )


# --- settings --------------------------------------------------------------------------


def test_store_config_and_security_config_pickle_to_equal_objects() -> None:
    config = StoreConfig(
        max_variable_size_bytes=1000,
        default_ttl_ms=None,
        max_ttl_ms=None,
        cas_retries=3,
        list_default_limit=7,
        list_max_limit=9,
        record_cache_size=0,
    )
    security = SecurityConfig(max_tasks_per_owner=None, allow_anonymous=True)
    for settings in (config, security, StoreConfig(), SecurityConfig()):
        for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
            copy = pickle.loads(pickle.dumps(settings, protocol=protocol))
            assert type(copy) is type(settings)
            assert copy == settings
    assert pickle.loads(pickle.dumps(config)) != StoreConfig()
    assert pickle.loads(pickle.dumps(security)) != SecurityConfig()


ERRORS = [
    TaskNotFound("t-1"),
    TaskExpired("t-1"),
    InvalidTransition("t-1", "completed", "failed"),
    NotReady("t-1", "working"),
    NoResult("t-1", "cancelled"),
    WaitTimeout("t-1", 2.5),
    InvalidArgument("ttl_ms must be >= 0"),
    VariableSizeExceeded(1000, 2000, "result"),
    AnonymousAccessDenied("local"),
    ResourceExhausted(20),
    ConcurrentModification("t-1", 17),
    StoreUnavailable("Redis unavailable during get", outcome_unknown=True),
    StorageCorrupted("stored bytes do not decode"),
]


@pytest.mark.parametrize("error", ERRORS, ids=[type(error).__name__ for error in ERRORS])
def test_every_error_pickles_to_an_equal_error_so_it_can_leave_a_worker_process(
    error: TaskStoreError,
) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
    assert copy.code == error.code


# --- process pools ---------------------------------------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_a_process_pool_executor_with_a_store_per_worker_runs_tasks_the_parent_reads_back(
    method: str, server_url: str, key_prefix: str, reader: ts.GenericTaskStore
) -> None:
    with ProcessPoolExecutor(
        max_workers=2,
        mp_context=multiprocessing.get_context(method),
        initializer=init_worker,
        initargs=(server_url, key_prefix, CONFIG, SECURITY),
    ) as pool:
        futures = [pool.submit(run_lifecycle, OWNER, index) for index in range(LIFECYCLES)]
        returned = [future.result(timeout=TIMEOUT) for future in futures]
    check_lifecycles(reader, returned)


@pytest.mark.redis
@pytest.mark.parametrize("method", START_METHODS)
def test_a_multiprocessing_pool_with_a_store_per_worker_runs_tasks_the_parent_reads_back(
    method: str, redis_url: str, key_prefix: str
) -> None:
    context = multiprocessing.get_context(method)
    with context.Pool(
        2, initializer=init_worker, initargs=(redis_url, key_prefix, CONFIG, SECURITY)
    ) as pool:
        pending = pool.starmap_async(run_lifecycle, [(OWNER, i) for i in range(LIFECYCLES)])
        returned = pending.get(timeout=TIMEOUT)
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix, config=CONFIG) as reader:
        check_lifecycles(reader, returned)


@pytest.mark.redis
def test_an_error_raised_in_a_pool_worker_reaches_the_parent_with_its_type_and_fields(
    redis_url: str, key_prefix: str
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        store.complete_with_result(task_id, "completed", None, {"first": True}, owner_id=OWNER)
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("fork"),
        initializer=init_worker,
        initargs=(redis_url, key_prefix, CONFIG, SECURITY),
    ) as pool:
        future = pool.submit(complete_again, OWNER, task_id)
        with pytest.raises(InvalidTransition) as raised:
            future.result(timeout=TIMEOUT)
    assert (raised.value.task_id, raised.value.from_status, raised.value.to_status) == (
        task_id,
        "completed",
        "failed",
    )


# --- threads ---------------------------------------------------------------------------


def test_eight_threads_sharing_one_store_lose_no_merge_on_one_task(
    server_url: str, key_prefix: str
) -> None:
    threads, merges = 8, 10
    barrier = threading.Barrier(threads)
    with ts.GenericTaskStore.from_url(server_url, prefix=key_prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id

        def merge_all(thread: int) -> list[tuple[str, bool]]:
            barrier.wait(timeout=TIMEOUT)
            outcomes = []
            for merge in range(merges):
                key = f"t{thread}m{merge}"
                try:
                    store.set_variables(task_id, {key: [thread, merge]}, owner_id=OWNER)
                except ConcurrentModification:
                    outcomes.append((key, False))
                else:
                    outcomes.append((key, True))
            return outcomes

        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(merge_all, thread) for thread in range(threads)]
            outcomes = [pair for future in futures for pair in future.result(timeout=TIMEOUT)]
        stored = store.get(task_id, owner_id=OWNER)

    assert len(outcomes) == threads * merges
    succeeded = {key for key, ok in outcomes if ok}
    gave_up = {key for key, ok in outcomes if not ok}
    print(f"{len(outcomes)} merges from {threads} threads, {len(gave_up)} gave up")
    assert stored.variables.keys() == succeeded, "a successful merge was lost, or a failed one kept"
    assert gave_up.isdisjoint(stored.variables.keys())
    for key in succeeded:
        thread, merge = (int(part) for part in key[1:].split("m"))
        assert stored.variables[key] == [thread, merge]
    assert stored.version == 1 + len(succeeded)
    assert len(succeeded) >= threads, "almost every merge gave up"


# --- a store inherited across fork ----------------------------------------------------


def redis_backend(store: ts.GenericTaskStore) -> ts.RedisBackend:
    backend = store.backend
    assert isinstance(backend, ts.RedisBackend)
    return backend


def use_inherited_store(store: ts.GenericTaskStore, operations: int, report: Report) -> None:
    """In a forked child: run ``operations`` operations on the parent's store; report."""
    try:
        backend = redis_backend(store)
        inherited = backend.client
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        for step in range(operations - 2):
            if step % 2:
                store.get(task_id, owner_id=OWNER)
            else:
                store.set_variables(task_id, {f"k{step}": step}, owner_id=OWNER)
        variables = store.get(task_id, owner_id=OWNER).variables
        client = backend.client
        assert client is not None
        client_ids = sorted(int(entry["id"]) for entry in client.client_list())
        report.put(
            {
                "task_id": task_id,
                "variables": variables,
                "client_id": int(client.client_id()),
                "client_ids": client_ids,
                "same_client_object": client is inherited,
            }
        )
    except BaseException as exc:
        report.put({"error": repr(exc)})


def use_wrapped_store_after_fork(store: ts.GenericTaskStore, task_id: str, report: Report) -> None:
    """In a forked child: try two writes and a read on a store wrapping the parent's client."""
    outcomes = []
    calls: dict[str, Callable[[], object]] = {
        "create": lambda: store.create(METHOD, owner_id=OWNER),
        "get": lambda: store.get(task_id, owner_id=OWNER),
        "set_variables": lambda: store.set_variables(task_id, {"child": True}, owner_id=OWNER),
    }
    for name, call in calls.items():
        try:
            call()
        except Exception as exc:
            unknown = getattr(exc, "outcome_unknown", None)
            outcomes.append((name, type(exc).__name__, str(exc), unknown))
        else:
            outcomes.append((name, "no error", "", None))
    report.put(outcomes)


def run_forked_child(target: Any, *args: Any, timeout: float = TIMEOUT) -> Any:
    """Run ``target(*args, report)`` in a forked child; return what it reported.

    A child that reports nothing within ``timeout`` seconds fails the test and is killed.
    """
    context = multiprocessing.get_context("fork")
    report: Report = context.Queue()
    child = context.Process(target=target, args=(*args, report))
    child.start()
    try:
        try:
            reported = report.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the forked child reported nothing within {timeout:g} s: it hangs")
        child.join(timeout=TIMEOUT)
        assert child.exitcode == 0
        return reported
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        report.close()
        report.join_thread()


def read_and_create_in_child(store: ts.GenericTaskStore, task_id: str, report: Report) -> None:
    """In a forked child: read the parent's task and create one; report the new task's id."""
    try:
        store.get(task_id, owner_id=OWNER)
        report.put({"task_id": store.create(METHOD, owner_id=OWNER).task.task_id})
    except BaseException as exc:
        report.put({"error": repr(exc)})


@pytest.mark.redis
def test_a_used_store_from_a_url_inherited_by_a_forked_child_reconnects_there(
    redis_url: str, key_prefix: str
) -> None:
    operations = 50
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        own_task = store.create(METHOD, owner_id=OWNER).task.task_id
        store.get(own_task, owner_id=OWNER)
        backend = redis_backend(store)
        client = backend.client
        assert client is not None, "the parent's store is connected"
        parent_id = int(client.client_id())

        reported = run_forked_child(use_inherited_store, store, operations)

        assert "error" not in reported, reported
        assert reported["client_id"] != parent_id, "the child used the parent's connection"
        assert not reported["same_client_object"]
        assert {parent_id, reported["client_id"]} <= set(reported["client_ids"])
        expected = {f"k{step}": step for step in range(0, operations - 2, 2)}
        assert reported["variables"] == expected
        assert store.get(reported["task_id"], owner_id=OWNER).variables == expected

        for step in range(operations):
            if step % 2:
                assert store.get(own_task, owner_id=OWNER).variables[f"p{step - 1}"] == step - 1
            else:
                store.set_variables(own_task, {f"p{step}": step}, owner_id=OWNER)
        assert backend.client is client, "the parent kept its client"
        assert int(client.client_id()) == parent_id, "the parent kept its connection"
        assert store.get(own_task, owner_id=OWNER).version == 1 + operations // 2


@pytest.mark.redis
def test_a_store_wrapping_a_users_client_refuses_to_work_in_a_forked_child(
    redis_url: str, key_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    with ts.GenericTaskStore(ts.RedisBackend(client, prefix=key_prefix)) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        parent_id = int(client.client_id())

        outcomes = run_forked_child(use_wrapped_store_after_fork, store, task_id)

        assert [name for name, *_ in outcomes] == ["create", "get", "set_variables"]
        for name, error, message, outcome_unknown in outcomes:
            assert error == "StoreUnavailable", (name, error, message)
            assert "after a fork" in message
            assert "GenericTaskStore.from_url" in message, "the message says what to do"
            assert outcome_unknown is False, "nothing was sent, so nothing is unknown"
        store.set_variables(task_id, {"parent": True}, owner_id=OWNER)
        stored = store.get(task_id, owner_id=OWNER)
        assert stored.variables == {"parent": True}
        assert stored.version == 2
        assert int(client.client_id()) == parent_id


@pytest.mark.redis
def test_a_store_inherited_by_a_child_forked_while_parent_threads_use_it_works_in_the_child(
    redis_url: str, key_prefix: str
) -> None:
    busy_threads, forks = 4, 5
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        stop = threading.Event()
        deadline = time.monotonic() + TIMEOUT

        def read_until_stopped() -> int:
            reads = 0
            while not stop.is_set() and time.monotonic() < deadline:
                store.get(task_id, owner_id=OWNER)
                reads += 1
            return reads

        with ThreadPoolExecutor(max_workers=busy_threads) as pool:
            readers = [pool.submit(read_until_stopped) for _ in range(busy_threads)]
            try:
                reports = [
                    run_forked_child(read_and_create_in_child, store, task_id, timeout=10.0)
                    for _ in range(forks)
                ]
            finally:
                stop.set()
            reads = [future.result(timeout=TIMEOUT) for future in readers]

        assert all(count > 0 for count in reads), "the parent's threads were busy"
        for reported in reports:
            assert "error" not in reported, reported
            assert store.get(reported["task_id"], owner_id=OWNER).task.status == "working"
        assert len(store.list(owner_id=OWNER).tasks) == 1 + forks
