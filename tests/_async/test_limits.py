"""Limits: a queue's or a group's concurrency and rate are never exceeded.

A claim skips a group at its limit and serves the others; the group comes back, in
its turn, when one of its leases ends or its bucket has a token. Memory, standalone
Redis and Redis Cluster, with the sync twin derived by scripts/unasync.py; one
owner's groups share a shard, where limits are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import InvalidArgument, Limits, TaskStatus
from tests.concurrently import async_background

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"


@pytest.fixture
async def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=None))


async def submit(store: ts.GenericTaskStore, group: str, count: int) -> None:
    await store.submit_many(
        METHOD, [[group, n] for n in range(count)], owner_id=OWNER, queue="jobs", group=group
    )


def groups_of(leases: list[ts.Lease]) -> list[str]:
    return sorted(str(lease.params[0]) for lease in leases)


@pytest.mark.anyio
async def test_limits_are_set_read_back_and_removed(store: ts.GenericTaskStore) -> None:
    await store.set_limits("jobs", max_concurrency=10, per_second=2.5, burst=3)
    await store.set_limits("jobs", group="tenant-1", max_concurrency=2)
    read = await store.limits("jobs")
    assert read.limits == Limits(max_concurrency=10, per_second=2.5, burst=3)
    assert read.groups == {"tenant-1": Limits(max_concurrency=2)}
    await store.set_limits("jobs", max_concurrency=4)  # the target's limits, whole
    await store.set_limits("jobs", group="tenant-1")
    read = await store.limits("jobs")
    assert (read.limits, read.groups) == (Limits(max_concurrency=4), {})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrency": 0},
        {"max_concurrency": 2.5},
        {"max_concurrency": True},
        {"per_second": 0},
        {"per_second": float("nan")},
        {"per_second": "5"},
        {"burst": 3},
        {"per_second": 1, "burst": 0},
        {"group": "", "max_concurrency": 1},
    ],
)
async def test_a_bad_limit_is_refused_and_sets_nothing(
    store: ts.GenericTaskStore, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        await store.set_limits("jobs", **kwargs)
    read = await store.limits("jobs")
    assert (read.limits, read.groups) == (Limits(), {})


@pytest.mark.anyio
async def test_a_group_at_its_concurrency_is_skipped_and_the_others_served(
    store: ts.GenericTaskStore,
) -> None:
    await store.set_limits("jobs", group="big", max_concurrency=2)
    await submit(store, "big", 6)
    await submit(store, "small", 3)
    leases = await store.claim_many("jobs", 10, timeout=5)
    assert groups_of(leases) == ["big", "big", "small", "small", "small"]
    stats = await store.queue_stats("jobs")
    assert (stats.ready, stats.leased) == (4, 5)  # the held ones still count as ready
    assert await store.claim_many("jobs", 10, timeout=0) == []
    big = next(lease for lease in leases if lease.params[0] == "big")
    await big.complete(TaskStatus.COMPLETED, None, "done")  # frees one place
    again = await store.claim_many("jobs", 10, timeout=5)
    assert groups_of(again) == ["big"]


@pytest.mark.anyio
async def test_the_queues_concurrency_caps_every_claim(store: ts.GenericTaskStore) -> None:
    await store.set_limits("jobs", max_concurrency=3)
    await submit(store, "a", 5)
    leases = await store.claim_many("jobs", 10, timeout=5)
    assert len(leases) == 3
    assert await store.claim_many("jobs", 10, timeout=0) == []
    await leases[0].release()
    assert len(await store.claim_many("jobs", 10, timeout=5)) == 1


@pytest.mark.anyio
async def test_a_waiting_claim_wakes_when_a_lease_of_a_full_group_ends(
    store: ts.GenericTaskStore,
) -> None:
    await store.set_limits("jobs", group="g", max_concurrency=1)
    await submit(store, "g", 2)
    first = await store.claim("jobs", timeout=5)
    assert first is not None
    got: list[ts.Lease | None] = []

    async def wait_for_one() -> None:
        got.append(await store.claim("jobs", timeout=10))

    async with async_background() as spawn:
        spawn(wait_for_one)
        await anyio.sleep(0.2)
        assert got == []  # the group is at its limit: nothing to claim
        await first.complete(TaskStatus.COMPLETED, None, "done")
    assert got and got[0] is not None and got[0].params == ["g", 1]


@pytest.mark.anyio
async def test_a_groups_rate_lets_its_burst_through_then_one_token_at_a_time(
    store: ts.GenericTaskStore,
) -> None:
    await store.set_limits("jobs", group="g", per_second=0.5, burst=2)
    await submit(store, "g", 6)
    first = await store.claim_many("jobs", 10, timeout=5)
    assert len(first) == 2  # the burst
    assert await store.claim_many("jobs", 10, timeout=0) == []
    later = await store.claim_many("jobs", 10, timeout=10)  # the next token, 2 s on
    assert len(later) == 1


@pytest.mark.anyio
async def test_removing_a_limit_lets_its_held_tasks_go(store: ts.GenericTaskStore) -> None:
    await store.set_limits("jobs", group="g", max_concurrency=1)
    await submit(store, "g", 3)
    assert len(await store.claim_many("jobs", 10, timeout=5)) == 1
    await store.set_limits("jobs", group="g")
    assert len(await store.claim_many("jobs", 10, timeout=5)) == 2


@pytest.mark.anyio
async def test_a_held_task_can_be_cancelled(store: ts.GenericTaskStore) -> None:
    await store.set_limits("jobs", group="g", max_concurrency=1)
    records = await store.submit_many(METHOD, [1, 2], owner_id=OWNER, queue="jobs", group="g")
    lease = await store.claim("jobs", timeout=5)
    assert lease is not None
    assert await store.claim("jobs", timeout=0) is None  # the other one is held now
    other = next(r for r in records if r.task.task_id != lease.task_id)
    await store.cancel(other.task.task_id, owner_id=OWNER)
    await lease.complete(TaskStatus.COMPLETED, None, "done")
    assert await store.claim("jobs", timeout=0) is None
    stats = await store.queue_stats("jobs")
    assert (stats.ready, stats.cancelled, stats.completed) == (0, 1, 1)
