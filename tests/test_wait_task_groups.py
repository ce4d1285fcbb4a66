"""Waits that only tasks can make: cancelled in the middle, and a hundred thousand at once.

The async store only (the blocking store's waiters are threads, which are not
cancelled); the races that both stores share are in tests/_async/test_wait_races.py,
whose helpers these tests use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import anyio
import pytest

import taskstore_redis.asyncio as ts
from tests._async.test_wait_races import (
    GUARD,
    OWNER,
    new_task,
    on_subscribed,
    registrations,
    subscribed_channels,
)
from tests.concurrently import async_counter

StoreFactory = Callable[..., ts.GenericTaskStore]


@pytest.mark.anyio
async def test_cancelled_waiters_leave_nothing_registered(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiters = 300
    store = async_make_store()
    task_ids = [await new_task(store) for _ in range(10)]
    counter = async_counter(waiters)
    on_subscribed(monkeypatch, store, counter)
    async with anyio.create_task_group() as group:
        for n in range(waiters):
            group.start_soon(functools.partial(store.wait, task_ids[n % 10], owner_id=OWNER))
        await counter.all_in()
        assert registrations(store) == waiters
        group.cancel_scope.cancel()
    assert registrations(store) == 0
    assert await subscribed_channels(store) == 0
    # the store still waits and wakes after the cancellations
    monkeypatch.undo()
    await store.cancel(task_ids[0], owner_id=OWNER)
    assert (
        await store.wait(task_ids[0], owner_id=OWNER, after_version=1, timeout=GUARD)
    ).version == 2


WAIT_CALLS = {"memory": 100_000, "redis": 100_000, "cluster": 10_000}
"""Wait calls of the leak test; fewer on the cluster, whose test server is the slowest."""


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_hundred_thousand_waits_leave_nothing_registered(
    async_make_store: StoreFactory, backend_kind: str
) -> None:
    store = async_make_store()
    task_ids = [await new_task(store) for _ in range(20)]
    calls = WAIT_CALLS[backend_kind]
    timeouts = 0

    async def wait(n: int) -> None:
        nonlocal timeouts
        try:
            await store.wait(task_ids[n % 20], owner_id=OWNER, until_terminal=True, timeout=0)
        except ts.WaitTimeout:
            timeouts += 1

    batch = 2_000
    for start in range(0, calls, batch):
        async with anyio.create_task_group() as group:
            for n in range(start, start + batch):
                group.start_soon(wait, n)
    assert timeouts == calls
    assert registrations(store) == 0
    assert await subscribed_channels(store) == 0
