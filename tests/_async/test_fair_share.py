"""Fair share: within a priority, claims take turns among flow-control groups.

A group is the owner unless a submit names one. Claims follow start-time fair
queuing: a group with a long backlog and one with a few tasks submitted after it
take turns, each keeping its own order. Every test runs on memory, standalone Redis
and Redis Cluster, with the sync twin derived by scripts/unasync.py; the groups of
one test belong to one owner (or to owners of one shard), so they share a shard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis.asyncio import InvalidArgument, TaskStatus

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "tools/call"


@pytest.fixture
async def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store(security=ts.SecurityConfig(max_tasks_per_owner=None))


async def claim_order(store: ts.GenericTaskStore, count: int) -> list[Any]:
    """Claim ``count`` tasks one at a time, completing each; their params in claim order."""
    order = []
    for _ in range(count):
        lease = await store.claim("jobs", timeout=5)
        assert lease is not None
        order.append(lease.params)
        await lease.complete(TaskStatus.COMPLETED, None, "done")
    return order


def turns(order: list[Any]) -> list[list[Any]]:
    """The claims two by two, each pair sorted.

    Tasks of two groups taking turns pair up; which of a pair goes first is not specified.
    """
    return [sorted(order[at : at + 2]) for at in range(0, len(order), 2)]


def same_shard_owner(owner: str) -> str:
    """Another owner id whose tasks share ``owner``'s shard (the default 16 shards)."""
    keys = KeySchema()
    return next(
        other
        for other in (f"tenant-{n}" for n in range(1000))
        if other != owner and keys.shard_of(other) == keys.shard_of(owner)
    )


@pytest.mark.anyio
async def test_a_group_submitting_after_a_backlog_takes_turns_with_it(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit_many(
        METHOD, [["a", n] for n in range(30)], owner_id=OWNER, queue="jobs", group="big"
    )
    await store.submit_many(
        METHOD, [["b", n] for n in range(3)], owner_id=OWNER, queue="jobs", group="small"
    )
    order = await claim_order(store, 8)
    assert turns(order) == [[["a", n], ["b", n]] for n in range(3)] + [[["a", 3], ["a", 4]]]


@pytest.mark.anyio
async def test_owners_are_groups_by_default(store: ts.GenericTaskStore) -> None:
    other = same_shard_owner(OWNER)
    await store.submit_many(METHOD, [["a", n] for n in range(20)], owner_id=OWNER, queue="jobs")
    await store.submit_many(METHOD, [["b", n] for n in range(2)], owner_id=other, queue="jobs")
    order = await claim_order(store, 4)
    assert sorted(order) == [["a", 0], ["a", 1], ["b", 0], ["b", 1]]


@pytest.mark.anyio
async def test_a_group_that_comes_back_gets_no_credit_for_its_idle_time(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit(METHOD, ["b", 0], owner_id=OWNER, queue="jobs", group="b")
    await store.submit_many(
        METHOD, [["a", n] for n in range(10)], owner_id=OWNER, queue="jobs", group="a"
    )
    assert turns(await claim_order(store, 6))[0] == [["a", 0], ["b", 0]]
    # b was idle while a ran: it rejoins at the current turn, not ahead of a's backlog
    await store.submit_many(
        METHOD, [["b", n] for n in range(1, 4)], owner_id=OWNER, queue="jobs", group="b"
    )
    order = await claim_order(store, 6)
    assert turns(order) == [[["a", 5 + n], ["b", 1 + n]] for n in range(3)]


@pytest.mark.anyio
async def test_priority_comes_before_fair_share(store: ts.GenericTaskStore) -> None:
    await store.submit_many(
        METHOD, [["a", n] for n in range(5)], owner_id=OWNER, queue="jobs", group="a"
    )
    await store.submit(METHOD, ["b", 0], owner_id=OWNER, queue="jobs", group="b", priority=1)
    assert (await claim_order(store, 2)) == [["b", 0], ["a", 0]]


@pytest.mark.anyio
async def test_a_delayed_or_released_task_rejoins_at_the_current_turn(
    store: ts.GenericTaskStore,
) -> None:
    await store.submit_many(
        METHOD, [["a", n] for n in range(6)], owner_id=OWNER, queue="jobs", group="a"
    )
    first = await store.claim("jobs", timeout=5)
    assert first is not None and first.params == ["a", 0]
    await store.submit(METHOD, ["b", 0], owner_id=OWNER, queue="jobs", group="b")
    await first.release()  # in line again: after the rest of its group
    order = await claim_order(store, 7)
    assert turns(order)[0] == [["a", 1], ["b", 0]]
    assert [params for params in order if params[0] == "a"] == [
        ["a", n] for n in (1, 2, 3, 4, 5, 0)
    ]


@pytest.mark.anyio
async def test_the_group_is_on_the_record_and_kept_by_resubmit(store: ts.GenericTaskStore) -> None:
    record = await store.submit(METHOD, owner_id=OWNER, queue="jobs", group="tenant-7")
    assert record.job is not None and record.job.group == "tenant-7"
    read = await store.get(record.task.task_id, owner_id=OWNER)
    assert read.job is not None and read.job.group == "tenant-7"
    own = await store.submit(METHOD, owner_id=OWNER, queue="jobs", group=OWNER)
    assert own.job is not None and own.job.group is None  # the owner's own group
    await store.cancel(record.task.task_id, owner_id=OWNER)
    again = await store.resubmit(record.task.task_id, owner_id=OWNER)
    assert again.job is not None and again.job.group == "tenant-7"


@pytest.mark.anyio
@pytest.mark.parametrize("group", ["", 5, "x" * 20_000])
async def test_a_bad_group_is_refused_and_writes_nothing(
    store: ts.GenericTaskStore, group: Any
) -> None:
    with pytest.raises(InvalidArgument, match="group"):
        await store.submit(METHOD, owner_id=OWNER, queue="jobs", group=group)
    with pytest.raises(InvalidArgument, match="group"):
        await store.submit_many(METHOD, [1], owner_id=OWNER, queue="jobs", group=group)
    assert (await store.queue_stats("jobs")).submitted == 0
