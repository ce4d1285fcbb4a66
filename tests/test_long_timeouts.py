"""Any timeout up to ``float("inf")`` means "wait that long at most", on both APIs.

Each wait here ends because something arrives (a submit, a status change) a moment
after it starts; a timeout that the store could not take would raise at once
(``OverflowError`` from ``threading``), and one taken wrongly would hang (each wait
runs under a guard that turns a hang into a failure).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import taskstore_redis as ts
import taskstore_redis.asyncio as ats
from taskstore_redis import InvalidArgument
from tests.conftest import AsyncStoreFactory, SyncStoreFactory

OWNER = "alice"
QUEUE = "long"
LATER = 0.2
"""Seconds after the wait starts when what it waits for arrives."""
GUARD = 20.0

TIMEOUTS = [
    pytest.param(1e10, id="1e10"),
    pytest.param(math.inf, id="inf"),
    pytest.param(10**400, id="int-beyond-float"),
    pytest.param(threading.TIMEOUT_MAX + 1, id="above-threading-max"),
]


def later(action: Callable[[], Any]) -> threading.Timer:
    timer = threading.Timer(LATER, action)
    timer.start()
    return timer


def bounded(started: float) -> None:
    assert time.monotonic() - started < GUARD, "the wait did not end when its event came"


# --- blocking API -------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", TIMEOUTS)
def test_sync_claim_with_a_huge_timeout_returns_the_task_submitted_meanwhile(
    sync_make_store: SyncStoreFactory, timeout: float
) -> None:
    store = sync_make_store()
    started = time.monotonic()
    first = later(lambda: store.submit("tools/call", owner_id=OWNER, queue=QUEUE))
    lease = store.claim(QUEUE, timeout=timeout)
    assert isinstance(lease, ts.Lease)
    bounded(started)
    second = later(lambda: store.submit("tools/call", owner_id=OWNER, queue=QUEUE))
    assert len(store.claim_many(QUEUE, 2, timeout=timeout)) == 1
    bounded(started)
    first.join(GUARD)
    second.join(GUARD)


@pytest.mark.parametrize("timeout", TIMEOUTS)
def test_sync_wait_with_a_huge_timeout_returns_the_change_made_meanwhile(
    sync_make_store: SyncStoreFactory, timeout: float
) -> None:
    store = sync_make_store()
    task_id = store.create("tools/call", owner_id=OWNER).task.task_id
    started = time.monotonic()
    first = later(lambda: store.set_variables(task_id, {"step": 1}, owner_id=OWNER))
    assert store.wait(task_id, owner_id=OWNER, timeout=timeout).variables == {"step": 1}
    first.join(GUARD)
    second = later(
        lambda: store.complete_with_result(task_id, "completed", None, {"a": 1}, owner_id=OWNER)
    )
    assert store.wait_for_result(task_id, owner_id=OWNER, timeout=timeout) == {"a": 1}
    bounded(started)
    second.join(GUARD)


# --- async API ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_async_claim_with_a_huge_timeout_returns_the_task_submitted_meanwhile(
    async_make_store: AsyncStoreFactory, timeout: float
) -> None:
    store = async_make_store()

    async def submit_later() -> None:
        await anyio.sleep(LATER)
        await store.submit("tools/call", owner_id=OWNER, queue=QUEUE)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(submit_later)
            lease = await store.claim(QUEUE, timeout=timeout)
        assert isinstance(lease, ats.Lease)
        async with anyio.create_task_group() as group:
            group.start_soon(submit_later)
            assert len(await store.claim_many(QUEUE, 2, timeout=timeout)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", TIMEOUTS)
async def test_async_wait_with_a_huge_timeout_returns_the_change_made_meanwhile(
    async_make_store: AsyncStoreFactory, timeout: float
) -> None:
    store = async_make_store()
    task_id = (await store.create("tools/call", owner_id=OWNER)).task.task_id

    async def change_later() -> None:
        await anyio.sleep(LATER)
        await store.set_variables(task_id, {"step": 1}, owner_id=OWNER)

    async def complete_later() -> None:
        await anyio.sleep(LATER)
        await store.complete_with_result(task_id, "completed", None, {"a": 1}, owner_id=OWNER)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            group.start_soon(change_later)
            record = await store.wait(task_id, owner_id=OWNER, timeout=timeout)
        assert record.variables == {"step": 1}
        async with anyio.create_task_group() as group:
            group.start_soon(complete_later)
            assert await store.wait_for_result(task_id, owner_id=OWNER, timeout=timeout) == {"a": 1}


# --- what stays refused -------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [-1, -math.inf, math.nan, "1", True])
def test_a_negative_nan_or_non_number_timeout_stays_invalid_on_both_apis(timeout: Any) -> None:
    store = ts.GenericTaskStore(ts.InMemoryBackend())
    task_id = store.create("tools/call", owner_id=OWNER).task.task_id
    with pytest.raises(InvalidArgument):
        store.claim(QUEUE, timeout=timeout)
    with pytest.raises(InvalidArgument):
        store.wait(task_id, owner_id=OWNER, timeout=timeout)

    async def main() -> None:
        astore = ats.GenericTaskStore(ats.InMemoryBackend())
        atask = (await astore.create("tools/call", owner_id=OWNER)).task.task_id
        with pytest.raises(InvalidArgument):
            await astore.claim(QUEUE, timeout=timeout)
        with pytest.raises(InvalidArgument):
            await astore.wait(atask, owner_id=OWNER, timeout=timeout)

    anyio.run(main)


# --- socket timeouts ----------------------------------------------------------------------

SOCKET_TIMEOUTS = [
    pytest.param(1e10, id="1e10"),
    pytest.param(math.inf, id="inf"),
    pytest.param(10**400, id="int-beyond-float"),
]


@pytest.mark.redis
@pytest.mark.parametrize("timeout", SOCKET_TIMEOUTS)
def test_sync_socket_timeouts_up_to_inf_are_taken(redis_url: str, timeout: float) -> None:
    with ts.GenericTaskStore.from_url(
        redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, prefix="long-socket"
    ) as store:
        task_id = store.create("tools/call", owner_id=OWNER).task.task_id
        assert store.wait(task_id, owner_id=OWNER, after_version=0, timeout=timeout).version == 1


@pytest.mark.anyio
@pytest.mark.redis
@pytest.mark.parametrize("timeout", SOCKET_TIMEOUTS)
async def test_async_socket_timeouts_up_to_inf_are_taken(redis_url: str, timeout: float) -> None:
    async with ats.GenericTaskStore.from_url(
        redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, prefix="long-socket"
    ) as store:
        task_id = (await store.create("tools/call", owner_id=OWNER)).task.task_id
        record = await store.wait(task_id, owner_id=OWNER, after_version=0, timeout=timeout)
        assert record.version == 1


@pytest.mark.parametrize("timeout", [0, -1, math.nan, "5", True])
@pytest.mark.parametrize("api", [ts, ats])
def test_a_socket_timeout_that_is_not_a_positive_number_is_refused_at_once(
    api: Any, timeout: Any
) -> None:
    for option in ("socket_timeout", "socket_connect_timeout"):
        with pytest.raises(InvalidArgument, match=option):
            api.GenericTaskStore.from_url("redis://127.0.0.1:1/0", **{option: timeout})
