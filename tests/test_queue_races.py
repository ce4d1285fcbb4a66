"""Work-queue races between stores: waiting claims and concurrent claimers, async and sync.

Like tests/test_concurrency_*.py these need a task group (async) or threads
(sync), so they are written twice rather than generated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import pytest

import taskstore_redis
import taskstore_redis.asyncio as ats
from taskstore_redis import TaskStatus
from taskstore_redis.testing import redis_server

OWNER = "alice"
METHOD = "tools/call"
SHORT_LEASE_MS = 300


def seconds_past(moment: datetime, extra_ms: int = 50) -> float:
    return max(0.0, (moment - datetime.now(UTC)).total_seconds() + extra_ms / 1000)


@pytest.mark.anyio
async def test_a_waiting_claim_wakes_on_a_submit_from_another_store(
    async_make_store: Callable[..., ats.GenericTaskStore],
) -> None:
    worker, client = async_make_store(), async_make_store()
    assert await worker.claim("wake", timeout=0) is None  # subscribed, and knows it is empty
    got: list[ats.Lease | None] = []

    async def wait_for_work() -> None:
        got.append(await worker.claim("wake", timeout=30))

    async with anyio.create_task_group() as group:
        group.start_soon(wait_for_work)
        await anyio.sleep(0.2)
        record = await client.submit(METHOD, "hello", owner_id=OWNER, queue="wake")
    assert got[0] is not None and got[0].task_id == record.task.task_id


def test_a_waiting_blocking_claim_wakes_on_a_submit_from_another_store(
    sync_make_store: Callable[..., taskstore_redis.GenericTaskStore],
) -> None:
    worker, client = sync_make_store(), sync_make_store()
    assert worker.claim("wake", timeout=0) is None
    got: list[taskstore_redis.Lease | None] = []
    thread = threading.Thread(target=lambda: got.append(worker.claim("wake", timeout=30)))
    thread.start()
    time.sleep(0.2)
    record = client.submit(METHOD, "hello", owner_id=OWNER, queue="wake")
    thread.join(60)
    assert got[0] is not None and got[0].task_id == record.task.task_id


@pytest.mark.anyio
async def test_exhausted_attempts_fail_the_task_once_among_concurrent_claimers(
    async_make_store: Callable[..., ats.GenericTaskStore],
) -> None:
    stores = [async_make_store() for _ in range(3)]
    record = await stores[0].submit(METHOD, owner_id=OWNER, max_attempts=2)
    for attempt in (1, 2):
        lease = await stores[0].claim(timeout=5, lease_ms=SHORT_LEASE_MS)
        assert lease is not None and lease.attempt == attempt
        await anyio.sleep(seconds_past(lease.expires_at))

    async def claim_quietly(store: ats.GenericTaskStore) -> None:
        assert await store.claim(timeout=0) is None

    async with anyio.create_task_group() as group:
        for store in stores:
            group.start_soon(claim_quietly, store)
    read = await stores[0].get(record.task.task_id, owner_id=OWNER)
    assert read.task.status is TaskStatus.FAILED
    assert read.task.status_message is not None and "worker lost" in read.task.status_message
    stats = await stores[0].queue_stats()
    assert (stats.failed, stats.given_up, stats.leased) == (1, 1, 0)


def test_exhausted_attempts_fail_the_task_once_among_concurrent_blocking_claimers(
    sync_make_store: Callable[..., taskstore_redis.GenericTaskStore],
) -> None:
    stores = [sync_make_store() for _ in range(3)]
    record = stores[0].submit(METHOD, owner_id=OWNER, max_attempts=1)
    lease = stores[0].claim(timeout=5, lease_ms=SHORT_LEASE_MS)
    assert lease is not None
    time.sleep(seconds_past(lease.expires_at))
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda s=store: results.append(s.claim(timeout=0)))
        for store in stores
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [None, None, None]
    read = stores[0].get(record.task.task_id, owner_id=OWNER)
    assert read.task.status is TaskStatus.FAILED
    assert read.task.status_message is not None and "worker lost" in read.task.status_message
    stats = stores[0].queue_stats()
    assert (stats.failed, stats.given_up) == (1, 1)


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_waiting_claim_outlives_a_server_restart_and_takes_work_submitted_after_it(
    key_prefix: str,
) -> None:
    with redis_server() as server:
        worker = ats.GenericTaskStore.from_url(server.url, prefix=key_prefix)
        client = ats.GenericTaskStore.from_url(server.url, prefix=key_prefix)
        async with worker, client:
            assert await worker.claim("restart", timeout=0) is None
            got: list[ats.Lease | None] = []

            async def wait_for_work() -> None:
                got.append(await worker.claim("restart", timeout=60))

            async with anyio.create_task_group() as group:
                group.start_soon(wait_for_work)
                await anyio.sleep(0.2)
                await anyio.to_thread.run_sync(server.restart)
                await anyio.sleep(0.5)
                record = await client.submit(METHOD, "after", owner_id=OWNER, queue="restart")
            assert got[0] is not None and got[0].task_id == record.task.task_id
