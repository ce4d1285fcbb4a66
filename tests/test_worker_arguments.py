"""``run_worker`` checks its arguments at the call: ``InvalidArgument``, before anything starts.

Both APIs, on memory stores. A refused call claims nothing, starts no thread and
returns at once; a worker that wrongly starts is stopped by its flag after a
second, so the test fails (``DID NOT RAISE``) instead of hanging.
"""

from __future__ import annotations

import argparse
import inspect
import math
import threading
import time
from typing import Any

import anyio
import msgspec
import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import InvalidArgument, StoreConfig
from taskstore_redis._cli._worker import _options, add_arguments
from taskstore_redis._core.worker_rules import DEFAULT_SETTINGS, WorkerSettings

OWNER = "alice"


class Soon:
    """A stop flag that is set a second after it is made."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + 1.0

    def is_set(self) -> bool:
        return time.monotonic() > self.deadline


def handler(lease: Any) -> str:
    raise AssertionError("no task may be claimed")


BAD: list[Any] = [
    pytest.param({"queue": "q" * 201}, id="queue-too-long"),
    pytest.param({"queue": 7}, id="queue-not-str"),
    pytest.param({"queue": ""}, id="queue-empty"),
    pytest.param({"concurrency": 1001}, id="concurrency-above-max-claim-count"),
    pytest.param({"concurrency": True}, id="concurrency-bool"),
    pytest.param({"concurrency": 2.5}, id="concurrency-float"),
    pytest.param({"lease_ms": 86_400_001}, id="lease-above-max-lease"),
    pytest.param({"lease_ms": 0}, id="lease-zero"),
    pytest.param({"max_attempts": 1_000_001}, id="max-attempts-absurd"),
    pytest.param({"retry_base_ms": 86_400_001, "retry_max_ms": 86_400_001}, id="retry-base-huge"),
    pytest.param({"grace_s": math.inf}, id="grace-inf"),
    pytest.param({"sweep_every_s": math.nan}, id="sweep-nan"),
    pytest.param({"idle_wait_s": -1}, id="idle-negative"),
    pytest.param({"worker_id": "w" * 201}, id="worker-id-too-long"),
    pytest.param({"worker_id": 5}, id="worker-id-not-str"),
    pytest.param({"handle_signals": "yes"}, id="handle-signals-not-bool"),
    pytest.param({"stop": object()}, id="stop-without-is-set"),
]


def sync_store(config: StoreConfig | None = None) -> ts.GenericTaskStore:
    return ts.GenericTaskStore(ts.InMemoryBackend(), config)


def async_store(config: StoreConfig | None = None) -> tsa.GenericTaskStore:
    return tsa.GenericTaskStore(tsa.InMemoryBackend(), config)


def options(bad: dict[str, Any]) -> dict[str, Any]:
    return {"stop": Soon(), "handle_signals": False, "idle_wait_s": 0.05, **bad}


@pytest.mark.parametrize("bad", BAD)
def test_the_blocking_run_worker_refuses_a_bad_argument_before_anything_starts(
    bad: dict[str, Any],
) -> None:
    store = sync_store()
    task_id = store.submit("tools/call", {"n": 1}, owner_id=OWNER).task.task_id
    threads = threading.active_count()
    with pytest.raises(InvalidArgument):
        ts.run_worker(store, handler, **options(bad))
    assert threading.active_count() == threads
    job = store.get(task_id, owner_id=OWNER).job
    assert job is not None and job.state == "ready"


@pytest.mark.parametrize("bad", BAD)
def test_the_async_run_worker_refuses_a_bad_argument_before_anything_starts(
    bad: dict[str, Any],
) -> None:
    async def main() -> None:
        store = async_store()
        record = await store.submit("tools/call", {"n": 1}, owner_id=OWNER)
        with pytest.raises(InvalidArgument):
            await tsa.run_worker(store, handler, **options(bad))
        job = (await store.get(record.task.task_id, owner_id=OWNER)).job
        assert job is not None and job.state == "ready"

    anyio.run(main)


def test_the_stores_own_limits_are_checked_at_the_call() -> None:
    store = sync_store(StoreConfig(max_claim_count=4, max_lease_ms=1_000, default_lease_ms=500))
    with pytest.raises(InvalidArgument, match="max_claim_count"):
        ts.run_worker(store, handler, **options({"concurrency": 5}))
    with pytest.raises(InvalidArgument, match="max_lease_ms"):
        ts.run_worker(store, handler, **options({"lease_ms": 1_001, "concurrency": 4}))


def test_a_store_of_the_other_flavour_or_a_handler_that_is_no_function_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="GenericTaskStore"):
        ts.run_worker(async_store(), handler, **options({}))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="handler"):
        ts.run_worker(sync_store(), None, **options({}))  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(InvalidArgument, match="GenericTaskStore"):
            await tsa.run_worker(sync_store(), handler, **options({}))  # type: ignore[arg-type]

    anyio.run(main)


@pytest.mark.parametrize("run_worker", [ts.run_worker, tsa.run_worker], ids=["sync", "async"])
def test_the_settings_of_run_worker_are_those_of_worker_settings_with_their_defaults(
    run_worker: Any,
) -> None:
    parameters = inspect.signature(run_worker).parameters
    settings = {name: parameters[name].default for name in WorkerSettings.__struct_fields__}
    assert settings == msgspec.structs.asdict(WorkerSettings())
    assert set(parameters) - set(settings) == {"store", "handler", "stop", "handle_signals"}


def test_the_worker_command_takes_its_defaults_from_the_worker_settings() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["jobs:handle"])
    assert _options(args) == {
        name: getattr(DEFAULT_SETTINGS, name)
        for name in ("queue", "concurrency", "lease_ms", "max_attempts", "grace_s", "schedules")
    }
