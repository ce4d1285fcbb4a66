"""Waits that another writer ends, on every backend: no lost wakeup, and nothing left behind.

Each race is made deterministic with hooks on the waiter's backend (a write
placed between its subscription and its first read, or between a read and the
wait that follows), never with sleeps. Written for the async store, whose waiters
are tasks; scripts/unasync.py derives the blocking twin, whose waiters are threads
(``tests/concurrently.py``). What only tasks can do (be cancelled, be counted in
the hundred thousand) is in tests/test_wait_task_groups.py; what only threads do,
in tests/test_wait_threads.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis._async import _store
from taskstore_redis._core.clock import now_ms
from taskstore_redis.asyncio import TaskNotFound, TaskRecord, TaskStatus
from taskstore_redis.asyncio.backend import TaskKey, TaskWatch
from tests.concurrently import async_background, async_counter

StoreFactory = Callable[..., ts.GenericTaskStore]
Hook = Callable[[], Awaitable[object]]

OWNER = "alice"
METHOD = "tools/call"
GUARD = 30.0
"""A timeout that only a lost wakeup reaches: it turns a hang into a failure."""
SETTLE_S = 5.0
"""How long a released channel may take to go (see ``subscribed_channels``)."""


class HookedWatch:
    """A backend watch that runs ``on_subscribed`` once the inner watch is in place."""

    def __init__(self, inner: TaskWatch, on_subscribed: Hook) -> None:
        self.inner = inner
        self.on_subscribed = on_subscribed

    async def __aenter__(self) -> HookedWatch:
        await self.inner.__aenter__()
        await self.on_subscribed()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def wait(self, timeout: float | None) -> None:
        await self.inner.wait(timeout)


def on_subscribed(monkeypatch: pytest.MonkeyPatch, store: ts.GenericTaskStore, hook: Hook) -> None:
    """Run ``hook`` each time a wait of ``store`` has subscribed, before its first read."""
    backend: Any = store.backend
    original = backend.watch
    monkeypatch.setattr(backend, "watch", lambda key: HookedWatch(original(key), hook))


def registrations(store: ts.GenericTaskStore) -> int:
    backend: Any = store.backend
    count: int = backend.watch_registrations()
    return count


async def subscribed_channels(store: ts.GenericTaskStore) -> int:
    """Channels the store's Redis subscriber still holds (0 on the memory backend).

    The blocking store lets a channel go on its listener's thread, just after the
    last waiter left it: this gives the listener up to ``SETTLE_S`` to do so.
    """
    backend: Any = store.backend
    hub = getattr(backend, "_hub", None)
    if hub is None:
        return 0
    deadline = time.monotonic() + SETTLE_S
    while hub.subscriber.channels() and time.monotonic() < deadline:
        await anyio.sleep(0.01)
    count: int = hub.subscriber.channels()
    return count


async def new_task(store: ts.GenericTaskStore, ttl_ms: int | None = None) -> str:
    return (await store.create(METHOD, owner_id=OWNER, ttl_ms=ttl_ms)).task.task_id


@pytest.mark.anyio
async def test_a_write_after_the_subscription_wakes_the_waiter(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, writer = async_make_store(), async_make_store()
    task_id = await new_task(writer)
    counter = async_counter(1)
    on_subscribed(monkeypatch, waiter_store, counter)
    got: list[TaskRecord] = []

    async def wait() -> None:
        got.append(await waiter_store.wait(task_id, owner_id=OWNER, timeout=GUARD))

    async with async_background() as spawn:
        spawn(wait)
        await counter.all_in()
        await writer.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
    assert [record.task.status for record in got] == [TaskStatus.INPUT_REQUIRED]
    assert got[0].version == 2
    assert registrations(waiter_store) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({}, id="any-change"),
        pytest.param({"after_version": 1}, id="after-version"),
        pytest.param({"until_terminal": True}, id="until-terminal"),
    ],
)
async def test_a_write_between_the_subscription_and_the_first_read_is_seen(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, arguments: dict[str, Any]
) -> None:
    waiter_store, writer = async_make_store(), async_make_store()
    task_id = await new_task(writer)

    async def write() -> None:
        await writer.complete_with_result(
            task_id, TaskStatus.COMPLETED, None, {"r": 1}, owner_id=OWNER
        )

    on_subscribed(monkeypatch, waiter_store, write)
    record = await waiter_store.wait(task_id, owner_id=OWNER, timeout=GUARD, **arguments)
    assert record.version == 2
    assert record.result == {"r": 1}


@pytest.mark.anyio
async def test_a_completion_between_the_subscription_and_the_first_read_gives_its_result(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, writer = async_make_store(), async_make_store()
    task_id = await new_task(writer)

    async def write() -> None:
        await writer.complete_with_result(
            task_id, TaskStatus.COMPLETED, None, {"r": 1}, owner_id=OWNER
        )

    on_subscribed(monkeypatch, waiter_store, write)
    assert await waiter_store.wait_for_result(task_id, owner_id=OWNER, timeout=GUARD) == {"r": 1}


@pytest.mark.anyio
async def test_a_notice_that_comes_between_a_read_and_the_wait_is_not_lost(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter reads version 1, then the write lands and publishes, then it waits."""
    waiter_store, writer = async_make_store(), async_make_store()
    task_id = await new_task(writer)
    backend: Any = waiter_store.backend
    original_get = backend.get
    reads = 0

    async def get_then_write(key: TaskKey) -> Any:
        nonlocal reads
        stored = await original_get(key)
        reads += 1
        if reads == 1:  # the waiter holds version 1; the change lands before it waits
            await writer.set_variables(task_id, {"late": True}, owner_id=OWNER)
        return stored

    monkeypatch.setattr(backend, "get", get_then_write)
    record = await waiter_store.wait(task_id, owner_id=OWNER, after_version=1, timeout=GUARD)
    assert record.variables == {"late": True}
    assert reads >= 2


@pytest.mark.anyio
async def test_many_waiters_on_one_task_all_return(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiters = 200
    waiter_store, writer = async_make_store(), async_make_store()
    task_id = await new_task(writer)
    counter = async_counter(waiters)
    on_subscribed(monkeypatch, waiter_store, counter)
    versions: list[int] = []

    async def wait() -> None:
        versions.append((await waiter_store.wait(task_id, owner_id=OWNER, timeout=GUARD)).version)

    async with async_background() as spawn:
        for _ in range(waiters):
            spawn(wait)
        await counter.all_in()
        await writer.cancel(task_id, owner_id=OWNER)
    assert versions == [2] * waiters
    assert registrations(waiter_store) == 0
    assert await subscribed_channels(waiter_store) == 0


@pytest.mark.anyio
async def test_waiters_on_many_tasks_each_return_their_own_task(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = 90  # below the default quota of live tasks per owner
    waiter_store, writer = async_make_store(), async_make_store()
    task_ids = [await new_task(writer) for _ in range(tasks)]
    counter = async_counter(tasks)
    on_subscribed(monkeypatch, waiter_store, counter)
    results: dict[str, Any] = {}

    async def wait(task_id: str) -> None:
        results[task_id] = await waiter_store.wait_for_result(
            task_id, owner_id=OWNER, timeout=GUARD
        )

    async with async_background() as spawn:
        for task_id in task_ids:
            spawn(wait, task_id)
        await counter.all_in()
        for n, task_id in enumerate(task_ids):
            await writer.complete_with_result(
                task_id, TaskStatus.COMPLETED, None, n, owner_id=OWNER
            )
    assert results == {task_id: n for n, task_id in enumerate(task_ids)}
    assert registrations(waiter_store) == 0


@pytest.mark.anyio
async def test_a_task_purged_while_waited_on_raises_task_not_found(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiter_store, writer = async_make_store(), async_make_store()
    created = now_ms()
    task_id = await new_task(writer, ttl_ms=60_000)
    # the waiter's clock stands still, so to it the task never expires: only the purge ends it
    monkeypatch.setattr(_store, "now_ms", lambda: created)
    counter = async_counter(1)
    on_subscribed(monkeypatch, waiter_store, counter)
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await waiter_store.wait(task_id, owner_id=OWNER, until_terminal=True, timeout=GUARD)
        except TaskNotFound as exc:
            outcome.append(exc)

    async with async_background() as spawn:
        spawn(wait)
        await counter.all_in()
        assert await writer.backend.purge_expired(now_ms() + 120_000) == 1
    assert len(outcome) == 1
    assert registrations(waiter_store) == 0
