"""With Redis down, every public method of both APIs raises the store's own errors.

Two outages: a port with nothing listening (the store never connected), and a server
that answered and was then SIGKILLed (the store holds a client, a subscription hub and
a lease). Each on standalone Redis and on Redis Cluster, each for the async and the
blocking API. The public methods of the store, its Redis backend and a lease are
enumerated from their classes: one without an entry in the tables below fails the
test, so a new method is covered as soon as it exists. Calls are kept short by short
socket timeouts and no client-side retries.

Also here: a waiting claim waits through an outage within its timeout.
"""

from __future__ import annotations

import inspect
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

import taskstore_redis as ts
import taskstore_redis.asyncio as ats
from taskstore_redis._core.clock import now_ms
from taskstore_redis._core.schedules import ScheduleFire, StoredSchedule
from taskstore_redis.backend import (
    CoreWrite,
    LeaseRef,
    NewTask,
    TaskKey,
    TaskRemoval,
    VariableMerge,
)
from taskstore_redis.testing import (
    RedisCluster,
    RedisServer,
    start_redis_cluster,
    start_redis_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]  # servers killed and paused

OWNER = "alice"
QUEUE = "q"
SHORT = 0.3
"""The timeout given to the calls that wait: long enough to wait, short for a test."""
BOUND = 8.0
"""Seconds one call may take at most with Redis down (short socket timeouts, no retries)."""


def fast(sync: bool) -> dict[str, Any]:
    """Options that make a call to a dead server fail quickly."""
    retry = redis.retry.Retry(NoBackoff(), 0) if sync else redis.asyncio.retry.Retry(NoBackoff(), 0)
    return {"socket_timeout": 0.2, "socket_connect_timeout": 0.2, "retry": retry}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Outage:
    """Where the store points, and how the server goes down."""

    url: str
    cluster: bool | None
    live: bool
    """Whether the server answers until :meth:`down` (a store can be used first)."""
    servers: list[RedisServer] = field(default_factory=list)

    def down(self) -> None:
        for server in self.servers:
            server.kill()


@contextmanager
def outage(kind: str, mode: str) -> Iterator[Outage]:
    if kind == "nothing-listening":
        # standalone: the kind of server is detected (and cannot be); cluster: forced
        yield Outage(
            f"redis://127.0.0.1:{free_port()}/0", True if mode == "cluster" else None, False
        )
        return
    cluster: RedisCluster | None = None
    server: RedisServer | None = None
    if mode == "cluster":
        cluster = start_redis_cluster(3)
        servers = list(cluster.nodes)
        url = cluster.url
    else:
        server = start_redis_server()
        servers = [server]
        url = server.url
    try:
        yield Outage(url, None, True, servers)
    finally:
        if cluster is not None:
            cluster.stop()
        if server is not None:
            server.stop()


# --- the samples: for each public method, the calls made and whether one must raise ---------


@dataclass
class Subjects:
    """What the sample calls are made on and with."""

    store: Any
    lease: Any
    task_id: str
    url: str
    key: TaskKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = TaskKey(OWNER, self.task_id)


Call = tuple[tuple[Any, ...], dict[str, Any]]
Sample = Callable[[Subjects], Call]


def no_args(_: Subjects) -> Call:
    return (), {}


def task(s: Subjects) -> Call:
    return (s.task_id,), {"owner_id": OWNER}


def core_write(s: Subjects) -> CoreWrite:
    return CoreWrite(
        key=s.key,
        expected_core_version=1,
        format="1",
        data=b"{}",
        created_at_ms=now_ms(),
        terminal=False,
        now_ms=now_ms(),
    )


def new_task(s: Subjects) -> NewTask:
    return NewTask(
        key=TaskKey(OWNER, uuid.uuid4().hex),
        format="1",
        data=b"{}",
        created_at_ms=now_ms(),
        expires_at_ms=None,
        purge_at_ms=None,
        max_live=None,
        now_ms=now_ms(),
    )


def merge(s: Subjects) -> VariableMerge:
    return VariableMerge(
        key=s.key, format_major=1, sets=[(b"k", b"1")], deletes=[], max_bytes=1000, now_ms=now_ms()
    )


def lease_ref(s: Subjects) -> LeaseRef:
    return LeaseRef(key=s.key, queue=QUEUE, token=1)


RAISES = True
MAY_RETURN = False
"""Methods that do not touch Redis (or close it): they may return, never raise a raw error."""

STORE: dict[str, tuple[bool, list[Sample]]] = {
    "aclose": (MAY_RETURN, [no_args]),
    "close": (MAY_RETURN, [no_args]),
    "cancel": (RAISES, [task]),
    "claim": (
        RAISES,
        [lambda s: ((QUEUE,), {"timeout": 0}), lambda s: ((QUEUE,), {"timeout": SHORT})],
    ),
    "claim_many": (
        RAISES,
        [lambda s: ((QUEUE, 3), {"timeout": 0}), lambda s: ((QUEUE, 3), {"timeout": SHORT})],
    ),
    "cleanup_expired": (RAISES, [no_args]),
    "complete_with_result": (
        RAISES,
        [lambda s: ((s.task_id, "completed", None, {"a": 1}), {"owner_id": OWNER})],
    ),
    "create": (RAISES, [lambda s: (("tools/call",), {"owner_id": OWNER})]),
    "delete": (RAISES, [task]),
    "from_url": (MAY_RETURN, [lambda s: ((s.url,), {})]),
    "get": (RAISES, [task]),
    "get_result": (RAISES, [task]),
    "list": (RAISES, [lambda s: ((), {"owner_id": OWNER})]),
    "limits": (RAISES, [lambda s: ((QUEUE,), {})]),
    "pause_queue": (RAISES, [lambda s: ((QUEUE,), {})]),
    "queue_leases": (RAISES, [lambda s: ((QUEUE,), {})]),
    "queue_stats": (RAISES, [lambda s: ((QUEUE,), {})]),
    "queues": (RAISES, [no_args]),
    "recover_leases": (RAISES, [no_args, lambda s: ((QUEUE,), {})]),
    "renew_leases": (RAISES, [lambda s: (([s.lease],), {})]),
    "resubmit": (RAISES, [task]),
    "resume_queue": (RAISES, [lambda s: ((QUEUE,), {})]),
    "schedule": (
        RAISES,
        [lambda s: (("nightly",), {"owner_id": OWNER, "request_method": "m", "every_ms": 1000})],
    ),
    "schedules": (RAISES, [no_args]),
    "set_limits": (RAISES, [lambda s: ((QUEUE,), {"max_concurrency": 2})]),
    "set_result": (RAISES, [lambda s: ((s.task_id, {"a": 1}), {"owner_id": OWNER})]),
    "set_status_message": (RAISES, [lambda s: ((s.task_id, "note"), {"owner_id": OWNER})]),
    "set_variables": (RAISES, [lambda s: ((s.task_id, {"k": 1}), {"owner_id": OWNER})]),
    "submit": (
        RAISES,
        [lambda s: (("tools/call", {"n": 1}), {"owner_id": OWNER, "queue": QUEUE})],
    ),
    "tasks_in_progress": (RAISES, [lambda s: ((), {"owner_id": OWNER})]),
    "submit_many": (
        RAISES,
        [lambda s: (("tools/call", [1, 2]), {"owner_id": OWNER, "queue": QUEUE})],
    ),
    "unschedule": (RAISES, [lambda s: (("nightly",), {})]),
    "update_status": (RAISES, [lambda s: ((s.task_id, "input_required"), {"owner_id": OWNER})]),
    "wait": (
        RAISES,
        [
            lambda s: ((s.task_id,), {"owner_id": OWNER, "timeout": SHORT}),
            lambda s: ((s.task_id,), {"owner_id": OWNER, "until_terminal": True, "timeout": SHORT}),
            lambda s: ((s.task_id,), {"owner_id": OWNER, "after_version": 5, "timeout": None}),
        ],
    ),
    "wait_for_result": (RAISES, [lambda s: ((s.task_id,), {"owner_id": OWNER, "timeout": SHORT})]),
}

BACKEND: dict[str, tuple[bool, list[Sample]]] = {
    "aclose": (MAY_RETURN, [no_args]),
    "close": (MAY_RETURN, [no_args]),
    "claim": (RAISES, [lambda s: ((QUEUE, 0, 1, 1000, "w", 10), {})]),
    "compare_and_set": (RAISES, [lambda s: ((core_write(s),), {})]),
    "complete_and_claim": (RAISES, [lambda s: ((QUEUE, 0, [], 1, 1000, "w", 10), {})]),
    "create": (RAISES, [lambda s: ((new_task(s),), {})]),
    "create_many": (RAISES, [lambda s: (([new_task(s), new_task(s)],), {})]),
    "delete": (
        RAISES,
        [lambda s: ((TaskRemoval(key=s.key, created_at_ms=now_ms(), data=b"{}"),), {})],
    ),
    "from_url": (MAY_RETURN, [lambda s: ((s.url,), {})]),
    "get": (RAISES, [lambda s: ((s.key,), {})]),
    "get_many": (RAISES, [lambda s: (([s.key],), {})]),
    "in_progress": (RAISES, [lambda s: ((OWNER, now_ms()), {})]),
    "list_page": (RAISES, [lambda s: ((OWNER, None, 10), {})]),
    "merge_variables": (RAISES, [lambda s: ((merge(s),), {})]),
    "purge_expired": (RAISES, [lambda s: ((now_ms(),), {})]),
    "queue_counts": (RAISES, [lambda s: ((QUEUE,), {})]),
    "queue_due": (RAISES, [lambda s: ((QUEUE, [0, 1]), {})]),
    "queue_leases": (RAISES, [lambda s: ((QUEUE, 10), {})]),
    "queue_names": (RAISES, [no_args]),
    "queue_shards": (MAY_RETURN, [no_args]),
    # a queue watch is entered while its nodes are down, to be confirmed when they are back
    "queue_watch": (MAY_RETURN, [lambda s: ((QUEUE, lambda shard: None), {})]),
    "recover": (RAISES, [lambda s: ((QUEUE, 0, 10), {})]),
    "release": (RAISES, [lambda s: ((lease_ref(s), 0), {})]),
    "renew": (RAISES, [lambda s: (([lease_ref(s)], 1000), {})]),
    "require_noeviction": (MAY_RETURN, [no_args]),
    "server_time_ms": (RAISES, [no_args]),
    "schedule_name": (RAISES, [lambda s: (("nightly", OWNER), {"remove": False})]),
    "schedule_owner": (RAISES, [lambda s: (("nightly",), {})]),
    "put_schedule": (RAISES, [lambda s: ((OWNER, "nightly", b"{}", now_ms()), {})]),
    "remove_schedule": (RAISES, [lambda s: ((OWNER, "nightly"), {})]),
    "due_schedules": (RAISES, [lambda s: ((now_ms(), 10), {})]),
    "fire_schedule": (
        RAISES,
        [
            lambda s: (
                (
                    OWNER,
                    StoredSchedule(name="nightly", spec=b"{}", next_ms=1, version=1),
                    ScheduleFire(due_at_ms=1, next_ms=2, tick_ms=None),
                    None,
                ),
                {},
            )
        ],
    ),
    # as a queue watch: entered while the nodes are down, confirmed when they are back
    "schedule_watch": (MAY_RETURN, [lambda s: ((lambda shard: None,), {})]),
    "set_paused": (RAISES, [lambda s: ((QUEUE, True), {}), lambda s: ((QUEUE, False), {})]),
    "set_limits": (
        RAISES,
        [lambda s: ((QUEUE, None, {"c": 2}), {}), lambda s: ((QUEUE, "g", {}), {})],
    ),
    "queue_limits": (RAISES, [lambda s: ((QUEUE,), {})]),
    "spublish": (RAISES, [lambda s: (("{t:mcp}:events", "{}"), {})]),
    "watch": (RAISES, [lambda s: ((s.key,), {})]),
    # the hub built before the server went down is returned as it is
    "watch_hub": (MAY_RETURN, [no_args]),
    "watch_registrations": (MAY_RETURN, [no_args]),
}

LEASE: dict[str, tuple[bool, list[Sample]]] = {
    "complete": (RAISES, [lambda s: (("completed", None, {"a": 1}), {})]),
    "parent_results": (MAY_RETURN, [no_args]),  # none: {} without asking the store
    "release": (RAISES, [no_args]),
    "renew": (RAISES, [no_args]),
    "set_status_message": (RAISES, [lambda s: (("note",), {})]),
    "set_variables": (RAISES, [lambda s: (({"k": 1},), {})]),
    "update_status": (RAISES, [lambda s: (("input_required",), {})]),
}

CLOSERS = ("aclose", "close")
WATCHES = ("backend.watch", "backend.queue_watch", "backend.schedule_watch")
"""They return a watch: the test enters it (which subscribes) and waits on it."""
BUILDERS = ("store.from_url", "backend.from_url")
"""They return a new store or backend (nothing connected yet): the test closes it."""


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, value in inspect.getmembers(cls)
        if not name.startswith("_") and callable(value) and not isinstance(value, type)
    }


def plan(
    subjects: Subjects, backend_cls: type, lease_cls: type
) -> list[tuple[str, Any, bool, Sample]]:
    """Every (label, callable, must raise, sample) to run, closers last; fails on a gap."""
    calls: list[tuple[str, Any, bool, Sample]] = []
    closers: list[tuple[str, Any, bool, Sample]] = []
    for label, subject, cls, table in (
        ("lease", subjects.lease, lease_cls, LEASE),
        ("backend", subjects.store.backend, backend_cls, BACKEND),
        ("store", subjects.store, type(subjects.store), STORE),
    ):
        missing = public_methods(cls) - table.keys()
        assert not missing, f"public methods of {cls.__name__} with no sample call: {missing}"
        for name in sorted(public_methods(cls)):
            must_raise, samples = table[name]
            for sample in samples:
                entry = (f"{label}.{name}", getattr(subject, name), must_raise, sample)
                (closers if name in CLOSERS else calls).append(entry)
    return calls + closers


def judge(label: str, must_raise: bool, error: BaseException | None, took: float) -> str | None:
    if took > BOUND:
        return f"{label} took {took:.1f} s"
    if error is None:
        return f"{label} returned with Redis down" if must_raise else None
    if not isinstance(error, ts.TaskStoreError):
        return f"{label} raised {type(error).__module__}.{type(error).__name__}: {error}"
    return None


# --- blocking API -------------------------------------------------------------------------


def sync_subjects(outage_: Outage) -> Subjects:
    store = ts.GenericTaskStore.from_url(
        outage_.url, cluster=outage_.cluster, prefix=f"t{uuid.uuid4().hex[:8]}", **fast(True)
    )
    if outage_.live:
        task_id = store.create("tools/call", owner_id=OWNER).task.task_id
        store.submit("tools/call", owner_id=OWNER, queue=QUEUE)
        lease = store.claim(QUEUE, timeout=5)
        assert lease is not None
        outage_.down()
    else:
        memory = ts.GenericTaskStore(ts.InMemoryBackend())
        record = memory.submit("tools/call", owner_id=OWNER, queue=QUEUE)
        memory.close()
        task_id = record.task.task_id
        lease = ts.Lease(
            store,
            record,
            queue=QUEUE,
            token=1,
            attempt=1,
            expires_at_ms=now_ms() + 60_000,
            worker_id=None,
        )
    return Subjects(store, lease, task_id, outage_.url)


def sync_call(label: str, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    result = method(*args, **kwargs)
    if label in WATCHES:  # entering subscribes
        with result as watch:
            if hasattr(watch, "wait"):
                watch.wait(0.01)
    elif label in BUILDERS:
        result.close()


@pytest.mark.parametrize("mode", ["standalone", pytest.param("cluster", marks=pytest.mark.cluster)])
@pytest.mark.parametrize("kind", ["nothing-listening", "killed"])
def test_sync_every_public_method_raises_a_store_error_while_redis_is_down(
    kind: str, mode: str
) -> None:
    with outage(kind, mode) as down:
        subjects = sync_subjects(down)
        problems = []
        for label, method, must_raise, sample in plan(subjects, ts.RedisBackend, ts.Lease):
            args, kwargs = sample(subjects)
            started = time.monotonic()
            error: BaseException | None = None
            try:
                sync_call(label, method, args, kwargs)
            except Exception as exc:
                error = exc
            problems.append(judge(label, must_raise, error, time.monotonic() - started))
        assert [problem for problem in problems if problem] == []


# --- async API ----------------------------------------------------------------------------


async def async_subjects(outage_: Outage) -> Subjects:
    store = ats.GenericTaskStore.from_url(
        outage_.url, cluster=outage_.cluster, prefix=f"t{uuid.uuid4().hex[:8]}", **fast(False)
    )
    if outage_.live:
        task_id = (await store.create("tools/call", owner_id=OWNER)).task.task_id
        await store.submit("tools/call", owner_id=OWNER, queue=QUEUE)
        lease = await store.claim(QUEUE, timeout=5)
        assert lease is not None
        await anyio.to_thread.run_sync(outage_.down)
    else:
        memory = ats.GenericTaskStore(ats.InMemoryBackend())
        record = await memory.submit("tools/call", owner_id=OWNER, queue=QUEUE)
        await memory.aclose()
        task_id = record.task.task_id
        lease = ats.Lease(
            store,
            record,
            queue=QUEUE,
            token=1,
            attempt=1,
            expires_at_ms=now_ms() + 60_000,
            worker_id=None,
        )
    return Subjects(store, lease, task_id, outage_.url)


async def async_call(
    label: str, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    result = method(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    if label in WATCHES:  # entering subscribes
        async with result as watch:
            if hasattr(watch, "wait"):
                await watch.wait(0.01)
    elif label in BUILDERS:
        await result.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["standalone", pytest.param("cluster", marks=pytest.mark.cluster)])
@pytest.mark.parametrize("kind", ["nothing-listening", "killed"])
async def test_async_every_public_method_raises_a_store_error_while_redis_is_down(
    kind: str, mode: str
) -> None:
    with outage(kind, mode) as down:
        subjects = await async_subjects(down)
        problems = []
        for label, method, must_raise, sample in plan(subjects, ats.RedisBackend, ats.Lease):
            args, kwargs = sample(subjects)
            started = time.monotonic()
            error: BaseException | None = None
            try:
                with anyio.fail_after(BOUND * 2):
                    await async_call(label, method, args, kwargs)
            except Exception as exc:
                error = exc
            problems.append(judge(label, must_raise, error, time.monotonic() - started))
        assert [problem for problem in problems if problem] == []


# --- a waiting claim waits through an outage ----------------------------------------------


def test_sync_a_claim_waiting_through_an_outage_takes_a_task_submitted_after_it() -> None:
    server = start_redis_server()
    try:
        server.kill()
        store = ts.GenericTaskStore.from_url(server.url, prefix="wait-out", **fast(True))
        got: list[Any] = []
        claimer = threading.Thread(target=lambda: got.append(store.claim(QUEUE, timeout=20)))
        claimer.start()
        time.sleep(0.5)
        assert claimer.is_alive(), f"the claim returned while Redis was down: {got}"
        server.restart()
        store.submit("tools/call", owner_id=OWNER, queue=QUEUE)
        claimer.join(20)
        assert not claimer.is_alive()
        assert isinstance(got[0], ts.Lease)
        store.close()
    finally:
        server.stop()


@pytest.mark.anyio
async def test_async_a_claim_waiting_through_an_outage_takes_a_task_submitted_after_it() -> None:
    server = start_redis_server()
    try:
        server.kill()
        store = ats.GenericTaskStore.from_url(server.url, prefix="wait-out", **fast(False))
        got: list[Any] = []

        async def claim() -> None:
            got.append(await store.claim(QUEUE, timeout=20))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(claim)
                await anyio.sleep(0.5)
                assert got == [], "the claim returned while Redis was down"
                await anyio.to_thread.run_sync(server.restart)
                await store.submit("tools/call", owner_id=OWNER, queue=QUEUE)
        assert isinstance(got[0], ats.Lease)
        await store.aclose()
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["standalone", pytest.param("cluster", marks=pytest.mark.cluster)])
def test_sync_a_claim_waiting_on_a_redis_that_stays_down_raises_at_its_timeout(
    mode: str,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = ts.GenericTaskStore.from_url(url, cluster=mode == "cluster" or None, **fast(True))
    started = time.monotonic()
    with pytest.raises(ts.StoreUnavailable):
        store.claim(QUEUE, timeout=1.0)
    assert 0.9 <= time.monotonic() - started < 1.0 + BOUND
    store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["standalone", pytest.param("cluster", marks=pytest.mark.cluster)])
async def test_async_a_claim_waiting_on_a_redis_that_stays_down_raises_at_its_timeout(
    mode: str,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = ats.GenericTaskStore.from_url(url, cluster=mode == "cluster" or None, **fast(False))
    started = time.monotonic()
    with pytest.raises(ats.StoreUnavailable):
        await store.claim(QUEUE, timeout=1.0)
    assert 0.9 <= time.monotonic() - started < 1.0 + BOUND
    await store.aclose()


def test_sync_a_claim_on_a_new_queue_while_redis_is_down_keeps_to_its_timeout() -> None:
    """The queue's subscription cannot be confirmed: the claim does not wait on it."""
    server = start_redis_server()
    try:
        # default socket timeouts: a subscription may take 10 s to be confirmed
        with ts.GenericTaskStore.from_url(server.url, prefix="new-queue") as store:
            assert store.claim("first", timeout=0) is None  # a client and a hub exist
            server.kill()
            started = time.monotonic()
            with pytest.raises(ts.StoreUnavailable):
                store.claim("second", timeout=1.0)
            assert 0.9 <= time.monotonic() - started < 3.0
            got: list[Any] = []
            claimer = threading.Thread(target=lambda: got.append(store.claim("third", timeout=20)))
            claimer.start()
            time.sleep(0.5)
            server.restart()
            store.submit("tools/call", owner_id=OWNER, queue="third")
            claimer.join(20)
            assert isinstance(got[0], ts.Lease)
    finally:
        server.stop()


@pytest.mark.anyio
async def test_async_a_claim_on_a_new_queue_while_redis_is_down_keeps_to_its_timeout() -> None:
    """The queue's subscription cannot be confirmed: the claim does not wait on it."""
    server = start_redis_server()
    try:
        async with ats.GenericTaskStore.from_url(server.url, prefix="new-queue") as store:
            assert await store.claim("first", timeout=0) is None
            await anyio.to_thread.run_sync(server.kill)
            started = time.monotonic()
            with pytest.raises(ats.StoreUnavailable):
                await store.claim("second", timeout=1.0)
            assert 0.9 <= time.monotonic() - started < 3.0
            got: list[Any] = []

            async def claim() -> None:
                got.append(await store.claim("third", timeout=20))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    group.start_soon(claim)
                    await anyio.sleep(0.5)
                    await anyio.to_thread.run_sync(server.restart)
                    await store.submit("tools/call", owner_id=OWNER, queue="third")
            assert isinstance(got[0], ats.Lease)
    finally:
        server.stop()


def test_a_queue_watch_entered_while_redis_is_down_notices_every_shard_once_confirmed() -> None:
    """What was submitted before the confirmation sent no notice: the claims look again."""
    server = start_redis_server()
    try:
        with ts.GenericTaskStore.from_url(server.url, prefix="pending", **fast(True)) as store:
            backend: Any = store.backend
            assert store.claim("first", timeout=0) is None  # a client and a hub exist
            server.kill()
            noticed: set[int] = set()
            with backend.queue_watch("second", noticed.add) as watch:
                assert not watch.live()
                assert noticed == set()
                server.restart()
                deadline = time.monotonic() + 20
                while len(noticed) < backend.queue_shards() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert watch.live()
                assert noticed == set(range(backend.queue_shards()))
    finally:
        server.stop()
