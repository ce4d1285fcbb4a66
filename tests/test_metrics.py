"""OpenTelemetry metrics of the store's operations (the ``otel`` extra).

Each operation is counted (``taskstore.operations``) and timed
(``taskstore.operation.duration``, seconds) with its ``operation`` and ``outcome``;
an operation's inner call of another counts once, as the outer one. Without
OpenTelemetry installed nothing is imported and the methods are not wrapped.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis._runtime import metrics

OWNER = "alice"
METHOD = "tools/call"
Key = tuple[str, str]


def snapshot(reader: Any) -> tuple[Counter[Key], Counter[Key], dict[Key, float]]:
    """(calls, histogram counts, histogram sums) by (operation, outcome), as read now."""
    calls: Counter[Key] = Counter()
    timed: Counter[Key] = Counter()
    seconds: dict[Key, float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != metrics.METER_NAME:
                continue
            for metric in scope.metrics:
                if metric.name not in (metrics.OPERATIONS, metrics.DURATION):
                    continue  # the work queues' instruments (tests/test_queue_metrics.py)
                for point in metric.data.data_points:
                    key = (point.attributes["operation"], point.attributes["outcome"])
                    if metric.name == metrics.OPERATIONS:
                        calls[key] += point.value
                    elif metric.name == metrics.DURATION:
                        assert metric.unit == "s"
                        timed[key] += point.count
                        seconds[key] = seconds.get(key, 0.0) + point.sum
    return calls, timed, seconds


def delta(reader: Any, before: tuple[Counter[Key], Counter[Key], dict[Key, float]]) -> Counter[Key]:
    """The calls counted since ``before``; checks that each was timed too."""
    calls, timed, seconds = snapshot(reader)
    new = calls - before[0]
    assert timed - before[1] == new  # every counted call has its duration
    for key in new:
        assert seconds[key] > before[2].get(key, 0.0)
    return new


def test_the_opentelemetry_extra_is_installed_for_these_tests() -> None:
    assert metrics.ENABLED
    assert hasattr(ts.GenericTaskStore.create, "__wrapped__")


def test_a_short_workload_is_counted_by_operation_and_outcome(metric_reader: Any) -> None:
    before = snapshot(metric_reader)
    with ts.GenericTaskStore(ts.InMemoryBackend()) as store:
        ids = [store.create(METHOD, owner_id=OWNER).task.task_id for _ in range(3)]
        store.set_variables(ids[0], {"step": 1}, owner_id=OWNER)
        store.get(ids[0], owner_id=OWNER)
        with pytest.raises(ts.TaskNotFound):
            store.get("no-such-task", owner_id=OWNER)
        store.complete_with_result(ids[1], "completed", None, {"ok": True}, owner_id=OWNER)
        assert store.get_result(ids[1], owner_id=OWNER) == {"ok": True}  # reads with get inside
        with pytest.raises(ts.NotReady):
            store.get_result(ids[2], owner_id=OWNER)
        store.cancel(ids[2], owner_id=OWNER)
        with pytest.raises(ts.InvalidTransition):
            store.cancel(ids[2], owner_id=OWNER)
        assert len(store.list(owner_id=OWNER).tasks) == 3
    assert delta(metric_reader, before) == Counter(
        {
            ("create", "ok"): 3,
            ("set_variables", "ok"): 1,
            ("get", "ok"): 1,
            ("get", "TaskNotFound"): 1,
            ("complete_with_result", "ok"): 1,
            ("get_result", "ok"): 1,
            ("get_result", "NotReady"): 1,
            ("cancel", "ok"): 1,
            ("cancel", "InvalidTransition"): 1,
            ("list", "ok"): 1,
        }
    )


@pytest.mark.redis
@pytest.mark.anyio
async def test_the_async_store_on_redis_counts_waits_once_with_their_outcome(
    metric_reader: Any, redis_url: str, key_prefix: str
) -> None:
    before = snapshot(metric_reader)
    async with tsa.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
        with pytest.raises(ts.WaitTimeout):
            await store.wait_for_result(task_id, owner_id=OWNER, timeout=0.05)
        await store.set_result(task_id, 7, owner_id=OWNER)
        await store.update_status(task_id, ts.TaskStatus.COMPLETED, owner_id=OWNER)
        assert await store.wait_for_result(task_id, owner_id=OWNER, timeout=5) == 7
        assert await store.cleanup_expired() == 0
    assert delta(metric_reader, before) == Counter(
        {
            ("create", "ok"): 1,
            ("wait_for_result", "WaitTimeout"): 1,
            ("set_result", "ok"): 1,
            ("update_status", "ok"): 1,
            ("wait_for_result", "ok"): 1,
            ("cleanup_expired", "ok"): 1,
        }
    )


def test_an_unreachable_server_is_counted_as_store_unavailable(metric_reader: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = snapshot(metric_reader)
    url = f"redis://127.0.0.1:{port}/0"
    with (
        ts.GenericTaskStore.from_url(url, cluster=False) as store,
        pytest.raises(ts.StoreUnavailable),
    ):
        store.create(METHOD, owner_id=OWNER)
    assert delta(metric_reader, before) == Counter({("create", "StoreUnavailable"): 1})


def test_without_opentelemetry_nothing_is_imported_or_wrapped() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the otel extra were not installed\n"
        "import taskstore_redis as ts, taskstore_redis.asyncio as tsa\n"
        "from taskstore_redis._runtime import metrics\n"
        "assert not metrics.ENABLED and metrics.store_instruments() is None\n"
        "for cls in (ts.GenericTaskStore, tsa.GenericTaskStore):\n"
        "    assert not any(hasattr(getattr(cls, n), '__wrapped__') for n in vars(cls)), cls\n"
        "store = ts.GenericTaskStore(ts.InMemoryBackend())\n"
        "store.get(store.create('tools/call', owner_id='alice').task.task_id, owner_id='alice')\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry') and sys.modules[m]]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_production_page_names_the_instruments_and_their_attributes() -> None:
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "operations" / "production.md"
    section = page.read_text(encoding="utf-8").split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    for name in (metrics.OPERATIONS, metrics.DURATION, metrics.METER_NAME, "`outcome`"):
        assert f"{name.strip('`')}`" in section, name
