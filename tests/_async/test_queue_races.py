"""Work-queue races between stores: waiting claims and concurrent claimers, on every backend.

Written for the async store, whose claimers are tasks; scripts/unasync.py derives
the blocking twin, whose claimers are threads (``tests/concurrently.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import TaskStatus
from tests.concurrently import async_background, async_together

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"
SHORT_LEASE_MS = 300


def seconds_past(moment: datetime, extra_ms: int = 50) -> float:
    return max(0.0, (moment - datetime.now(UTC)).total_seconds() + extra_ms / 1000)


@pytest.mark.anyio
async def test_a_waiting_claim_wakes_on_a_submit_from_another_store(
    async_make_store: StoreFactory,
) -> None:
    worker, client = async_make_store(), async_make_store()
    assert await worker.claim("wake", timeout=0) is None  # subscribed, and knows it is empty
    got: list[ts.Lease | None] = []

    async def wait_for_work() -> None:
        got.append(await worker.claim("wake", timeout=30))

    async with async_background() as spawn:
        spawn(wait_for_work)
        await anyio.sleep(0.2)
        record = await client.submit(METHOD, "hello", owner_id=OWNER, queue="wake")
    assert got[0] is not None and got[0].task_id == record.task.task_id


@pytest.mark.anyio
async def test_exhausted_attempts_fail_the_task_once_among_concurrent_claimers(
    async_make_store: StoreFactory,
) -> None:
    stores = [async_make_store() for _ in range(3)]
    record = await stores[0].submit(METHOD, owner_id=OWNER, max_attempts=2)
    for attempt in (1, 2):
        lease = await stores[0].claim(timeout=5, lease_ms=SHORT_LEASE_MS)
        assert lease is not None and lease.attempt == attempt
        await anyio.sleep(seconds_past(lease.expires_at))

    async def claim(store: ts.GenericTaskStore) -> ts.Lease | None:
        return await store.claim(timeout=0)

    assert await async_together([partial(claim, store) for store in stores]) == [None] * 3
    read = await stores[0].get(record.task.task_id, owner_id=OWNER)
    assert read.task.status is TaskStatus.FAILED
    assert read.task.status_message is not None and "worker lost" in read.task.status_message
    stats = await stores[0].queue_stats()
    assert (stats.failed, stats.given_up, stats.leased) == (1, 1, 0)
