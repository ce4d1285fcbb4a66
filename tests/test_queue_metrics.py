"""OpenTelemetry metrics of the work queues (the ``otel`` extra).

``submit`` and ``claim_many`` count a queue's ``submitted`` and ``claimed`` tasks;
``run_worker`` counts ``completed``, ``failed``, ``recovered`` and ``lease_lost``,
times each handler call (``taskstore.queue.handler.duration``, by ``outcome``) and,
while it runs, reports its queue's ``ready``, ``delayed`` and ``leased`` gauges,
read from ``queue_stats`` at collection time in the collecting thread. Every
instrument carries the ``queue`` attribute; each test uses a queue of its own.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis._runtime import metrics

OWNER = "alice"
METHOD = "tools/call"
BOUND_S = 30.0
"""No test waits longer than this for what it expects."""
FAST: dict[str, Any] = {"retry_base_ms": 20, "retry_max_ms": 100, "idle_wait_s": 0.1}


def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def read(reader: Any, queue: str) -> tuple[Counter[str], Counter[str], dict[str, float]]:
    """(counters by name, handler calls by outcome, gauges by name) of ``queue`` now."""
    counters: Counter[str] = Counter()
    handled: Counter[str] = Counter()
    gauges: dict[str, float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != metrics.METER_NAME:
                continue
            for metric in scope.metrics:
                name = metric.name.removeprefix("taskstore.queue.")
                for point in metric.data.data_points:
                    if point.attributes.get("queue") != queue:
                        continue
                    if metric.name == metrics.HANDLER_DURATION:
                        assert metric.unit == "s"
                        assert point.sum >= 0
                        handled[point.attributes["outcome"]] += point.count
                    elif name in metrics.QUEUE_COUNTERS:
                        counters[name] += point.value
                    elif name in metrics.QUEUE_GAUGES:
                        gauges[name] = point.value
    return counters, handled, gauges


async def wait_until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(BOUND_S):
        while not check():
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_worker_run_is_counted_timed_and_gauged_by_queue(
    metric_reader: Any, async_make_store: Callable[..., tsa.GenericTaskStore]
) -> None:
    store = async_make_store()
    queue = queue_name()
    for number in range(3):
        await store.submit(METHOD, {"n": number}, owner_id=OWNER, queue=queue)
    await store.submit(METHOD, {"fail": True}, owner_id=OWNER, queue=queue, max_attempts=1)
    await store.submit(METHOD, {"n": 9}, owner_id=OWNER, queue=queue, delay_ms=3_600_000)
    started: set[int] = set()
    go = anyio.Event()
    done = threading.Event()

    async def handler(lease: tsa.Lease) -> Any:
        if lease.params.get("fail"):
            raise ValueError("no luck")
        started.add(lease.params["n"])
        await go.wait()
        return lease.params["n"]

    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: tsa.run_worker(
                store, handler, queue=queue, stop=done, handle_signals=False, **FAST
            )
        )
        await wait_until(lambda: len(started) == 3)
        # collected from another thread, as a periodic exporter does: the loop answers it
        counters, _, gauges = await anyio.to_thread.run_sync(read, metric_reader, queue)
        assert gauges == {"ready": 0, "delayed": 1, "leased": 3}
        assert counters["submitted"] == 5
        assert counters["claimed"] == 4
        go.set()
        await wait_until(lambda: read(metric_reader, queue)[0]["completed"] == 3)
        done.set()
    counters, handled, gauges = read(metric_reader, queue)
    assert counters == Counter(submitted=5, claimed=4, completed=3, failed=1)
    assert handled == Counter(completed=3, failed=1)
    assert gauges == {}  # no worker on the queue any more: nothing reported for it


@pytest.mark.anyio
async def test_gauges_collected_on_the_workers_own_event_loop_leave_the_queue_out(
    metric_reader: Any,
) -> None:
    queue = queue_name()
    done = threading.Event()
    async with tsa.GenericTaskStore(tsa.InMemoryBackend()) as store:
        await store.submit(METHOD, owner_id=OWNER, queue=queue, delay_ms=3_600_000)
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: tsa.run_worker(
                    store, lambda lease: None, queue=queue, stop=done, handle_signals=False
                )
            )
            await anyio.sleep(0.2)
            assert read(metric_reader, queue)[2] == {}  # it would wait for itself: skipped
            assert (await anyio.to_thread.run_sync(read, metric_reader, queue))[2] == {
                "ready": 0,
                "delayed": 1,
                "leased": 0,
            }
            done.set()


def run_blocking_worker(store: ts.GenericTaskStore, handler: Any, **options: Any) -> Any:
    """Start ``run_worker`` on a blocking store in a thread; return its stop flag and thread."""
    stop = threading.Event()
    options = {"stop": stop, "handle_signals": False, **FAST, **options}
    worker = threading.Thread(target=ts.run_worker, args=(store, handler), kwargs=options)
    worker.start()
    return stop, worker


def poll(check: Callable[[], bool]) -> None:
    for _ in range(int(BOUND_S / 0.02)):
        if check():
            return
        threading.Event().wait(0.02)
    raise AssertionError("not reached in time")


def test_the_blocking_worker_counts_retries_and_lost_leases(metric_reader: Any) -> None:
    queue = queue_name()
    with ts.GenericTaskStore(ts.InMemoryBackend()) as store:
        store.submit(METHOD, {"do": "flaky"}, owner_id=OWNER, queue=queue, max_attempts=2)
        store.submit(METHOD, {"do": "cancelled"}, owner_id=OWNER, queue=queue)

        def handler(lease: ts.Lease) -> Any:
            what = lease.params["do"]
            if what == "flaky" and lease.attempt == 1:
                raise ValueError("first attempt fails")
            if what == "cancelled":
                store.cancel(lease.task_id, owner_id=lease.owner_id)
                with pytest.raises(ts.LeaseLost):
                    while True:  # the renewal finds the lease lost; then any write is refused
                        threading.Event().wait(0.05)
                        lease.update_status(ts.TaskStatus.WORKING, "still going")
            return what

        stop, worker = run_blocking_worker(store, handler, queue=queue, lease_ms=1000)
        try:
            poll(lambda: read(metric_reader, queue)[1].total() == 3)
        finally:
            stop.set()
            worker.join(BOUND_S)
    counters, handled, _ = read(metric_reader, queue)
    assert counters == Counter(submitted=2, claimed=3, completed=1, lease_lost=1)
    assert handled == Counter(completed=1, retried=1, lost=1)


def test_an_expired_lease_swept_by_the_worker_is_counted_recovered(metric_reader: Any) -> None:
    queue = queue_name()
    release = threading.Event()
    with ts.GenericTaskStore(ts.InMemoryBackend()) as store:
        store.submit(METHOD, {"do": "hold"}, owner_id=OWNER, queue=queue)

        def handler(lease: ts.Lease) -> Any:
            if lease.params["do"] == "hold":
                release.wait(BOUND_S)
            return lease.params["do"]

        stop, worker = run_blocking_worker(
            store, handler, queue=queue, concurrency=1, sweep_every_s=0.1
        )
        try:
            poll(lambda: store.queue_stats(queue).leased == 1)  # its only slot is taken
            assert read(metric_reader, queue)[2] == {"ready": 0, "delayed": 0, "leased": 1}
            store.submit(METHOD, {"do": "dropped"}, owner_id=OWNER, queue=queue)
            assert store.claim(queue, lease_ms=1, timeout=0) is not None  # never renewed
            poll(lambda: read(metric_reader, queue)[0]["recovered"] == 1)
            release.set()
            poll(lambda: read(metric_reader, queue)[0]["completed"] == 2)
        finally:
            release.set()
            stop.set()
            worker.join(BOUND_S)
    counters, _, _ = read(metric_reader, queue)
    assert counters == Counter(submitted=2, claimed=3, recovered=1, completed=2)


def test_the_production_page_names_every_queue_instrument() -> None:
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "operations" / "production.md"
    section = page.read_text(encoding="utf-8").split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    for name in metrics.QUEUE_COUNTERS:
        assert f"`taskstore.queue.{name}`" in section, name
    assert f"`{metrics.HANDLER_DURATION}`" in section
    assert "`taskstore.queue.ready`, `.delayed`, `.leased`" in section
    assert set(metrics.QUEUE_GAUGES) == {"ready", "delayed", "leased"}
