"""Schedules: creating, updating and deleting them, names, and firing with catch-up.

Every test runs on every backend of the ``async_make_store`` fixture (memory,
standalone Redis, Redis Cluster); scripts/unasync.py derives the blocking twin. A
firing is driven one round at a time (``_fire_due_schedules``), after moving a
schedule's stored next fire time into the past: no test waits for the clock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis._core.backend_types import CreateOutcome, NewJob
from taskstore_redis._core.schedules import decode_spec, plan, schedule_info
from taskstore_redis._redis.keys import encode_id
from taskstore_redis.asyncio import InvalidArgument, ScheduleInfo, ScheduleNameTaken
from tests.concurrently import async_background

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
METHOD = "reports/build"
HOUR_MS = 3_600_000
BOUND_S = 30.0
"""A generous bound on a wait that normally takes milliseconds."""


@pytest.fixture
async def store(async_make_store: StoreFactory) -> ts.GenericTaskStore:
    return async_make_store()


async def now_of(store: ts.GenericTaskStore) -> int:
    """The store's clock (the server's, for Redis)."""
    backend: Any = store.backend
    now: int = await backend.server_time_ms()
    return now


async def rewind(store: ts.GenericTaskStore, name: str, next_ms: int) -> None:
    """Set a schedule's stored next fire time, as if no scheduler had run since then."""
    backend: Any = store.backend
    if isinstance(backend, ts.InMemoryBackend):
        storage: Any = backend._storage
        storage._schedules[name] = msgspec.structs.replace(
            storage._schedules[name], next_ms=next_ms
        )
        return
    keys = backend.keys
    shard = keys.shard_of(OWNER)
    await backend.client.hset(keys.schedule_key(OWNER, name), "n", next_ms)
    await backend.client.zadd(keys.schedules_key(shard), {encode_id(name): next_ms})


async def queued(store: ts.GenericTaskStore, queue: str) -> list[Any]:
    """The tasks waiting on ``queue``, claimed and completed, with their job info."""
    found = []
    while (lease := await store.claim(queue, timeout=0)) is not None:
        record = await store.get(lease.task_id, owner_id=OWNER)
        found.append(record)
        await lease.complete(ts.TaskStatus.COMPLETED, None, "done")
    return found


async def named(store: ts.GenericTaskStore, name: str) -> ScheduleInfo:
    [info] = [info for info in await store.schedules() if info.name == name]
    return info


# --- creating, updating, deleting -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_schedule_is_listed_with_its_spec_and_next_fire_time(
    store: ts.GenericTaskStore,
) -> None:
    now = await now_of(store)
    info = await store.schedule(
        "nightly",
        owner_id=OWNER,
        request_method=METHOD,
        params={"kind": "daily"},
        queue="reports",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        priority=3,
        max_attempts=2,
    )
    assert (info.name, info.owner_id, info.queue, info.request_method) == (
        "nightly",
        OWNER,
        "reports",
        METHOD,
    )
    assert (info.cron, info.every_ms, info.timezone, info.catch_up) == (
        "30 2 * * *",
        None,
        "Europe/Berlin",
        "once",
    )
    assert (info.params, info.priority, info.max_attempts) == ({"kind": "daily"}, 3, 2)
    assert now < info.next_fire_at.timestamp() * 1000 <= now + 25 * HOUR_MS
    assert (info.last_fire_at, info.last_task_id) == (None, None)
    assert await store.schedules() == [info]


@pytest.mark.anyio
async def test_scheduling_again_with_the_same_arguments_changes_nothing(
    store: ts.GenericTaskStore,
) -> None:
    first = await store.schedule("hourly", owner_id=OWNER, request_method=METHOD, every_ms=HOUR_MS)
    again = await store.schedule("hourly", owner_id=OWNER, request_method=METHOD, every_ms=HOUR_MS)
    assert again == first
    changed = await store.schedule(
        "hourly", owner_id=OWNER, request_method=METHOD, every_ms=2 * HOUR_MS, queue="other"
    )
    assert (changed.every_ms, changed.queue) == (2 * HOUR_MS, "other")
    assert changed.next_fire_at.timestamp() * 1000 % (2 * HOUR_MS) == 0
    assert await store.schedules() == [changed]


@pytest.mark.anyio
async def test_unschedule_deletes_the_schedule_and_frees_its_name(
    store: ts.GenericTaskStore,
) -> None:
    await store.schedule("hourly", owner_id=OWNER, request_method=METHOD, every_ms=HOUR_MS)
    await store.schedule("daily", owner_id=OWNER, request_method=METHOD, cron="0 0 * * *")
    assert await store.unschedule("hourly") is True
    assert await store.unschedule("hourly") is False
    assert await store.unschedule("never-made") is False
    assert [info.name for info in await store.schedules()] == ["daily"]
    taken = await store.schedule("hourly", owner_id="bob", request_method=METHOD, every_ms=1000)
    assert taken.owner_id == "bob"


@pytest.mark.anyio
async def test_a_name_of_another_owner_is_refused_and_nothing_is_written(
    store: ts.GenericTaskStore,
) -> None:
    mine = await store.schedule("shared", owner_id=OWNER, request_method=METHOD, every_ms=HOUR_MS)
    with pytest.raises(ScheduleNameTaken) as raised:
        await store.schedule("shared", owner_id="bob", request_method="other", every_ms=1000)
    assert raised.value.name == "shared"
    assert "bob" not in str(raised.value) and OWNER not in str(raised.value)
    assert await store.schedules() == [mine]


@pytest.mark.parametrize(
    "arguments",
    [
        {},  # neither cron nor every_ms
        {"cron": "* * * * *", "every_ms": 1000},  # both
        {"cron": "* * * *"},  # four fields
        {"cron": "0 * * * * *"},  # six fields (seconds)
        {"cron": "61 * * * *"},
        {"cron": "every day"},
        {"cron": 5},
        {"every_ms": 0},
        {"every_ms": 1.5},
        {"every_ms": True},
        {"every_ms": 1000, "timezone": "Mars/Olympus"},
        {"every_ms": 1000, "catch_up": "all"},
        {"every_ms": 1000, "priority": 10},
        {"every_ms": 1000, "max_attempts": 0},
        {"every_ms": 1000, "params": {"not": {1, 2}}},
        {"every_ms": 1000, "queue": ""},
        {"every_ms": 1000, "name": ""},
        {"every_ms": 1000, "name": "line\nbreak"},
        {"every_ms": 1000, "name": 7},
    ],
    ids=repr,
)
@pytest.mark.anyio
async def test_bad_arguments_are_refused_and_nothing_is_written(
    store: ts.GenericTaskStore, arguments: dict[str, Any]
) -> None:
    given = dict(arguments)
    name = given.pop("name", "bad")
    with pytest.raises(InvalidArgument):
        await store.schedule(name, owner_id=OWNER, request_method=METHOD, **given)
    assert await store.schedules() == []
    # the name was not taken either
    info = await store.schedule("bad", owner_id="bob", request_method=METHOD, every_ms=1000)
    assert info.owner_id == "bob"


# --- firing ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_due_tick_submits_one_task_scheduled_for_it(store: ts.GenericTaskStore) -> None:
    await store.schedule(
        "hourly", owner_id=OWNER, request_method=METHOD, params=[1], every_ms=HOUR_MS, queue="q"
    )
    tick = await now_of(store) // HOUR_MS * HOUR_MS  # the last tick, come already
    await rewind(store, "hourly", tick)
    await store._fire_due_schedules()
    await store._fire_due_schedules()  # nothing more is due
    [task] = await queued(store, "q")
    assert task.job is not None and task.job.scheduled_for is not None
    assert task.job.scheduled_for.timestamp() * 1000 == tick
    assert (task.request_method, task.params, task.owner_id) == (METHOD, [1], OWNER)
    info = await named(store, "hourly")
    assert info.last_task_id == task.task.task_id
    assert info.last_fire_at == task.job.scheduled_for
    assert info.next_fire_at.timestamp() * 1000 == tick + HOUR_MS


@pytest.mark.parametrize("catch_up", ["once", "skip"])
@pytest.mark.anyio
async def test_ticks_missed_are_fired_once_or_skipped(
    store: ts.GenericTaskStore, catch_up: str
) -> None:
    await store.schedule(
        "hourly",
        owner_id=OWNER,
        request_method=METHOD,
        every_ms=HOUR_MS,
        queue="q",
        catch_up=catch_up,
    )
    now = await now_of(store)
    latest = now // HOUR_MS * HOUR_MS
    await rewind(store, "hourly", latest - 5 * HOUR_MS)  # six ticks due
    await store._fire_due_schedules()
    await store._fire_due_schedules()
    tasks = await queued(store, "q")
    info = await named(store, "hourly")
    assert info.next_fire_at.timestamp() * 1000 == latest + HOUR_MS
    if catch_up == "skip":
        assert tasks == []
        assert (info.last_fire_at, info.last_task_id) == (None, None)
        return
    [task] = tasks
    assert task.job is not None and task.job.scheduled_for is not None
    assert task.job.scheduled_for.timestamp() * 1000 == latest
    assert info.last_task_id == task.task.task_id


@pytest.mark.anyio
async def test_of_two_steps_made_from_one_read_only_the_first_applies(
    async_make_store: StoreFactory,
) -> None:
    first, second = async_make_store(), async_make_store()
    await first.schedule("hourly", owner_id=OWNER, request_method=METHOD, every_ms=HOUR_MS)
    tick = await now_of(first) // HOUR_MS * HOUR_MS
    await rewind(first, "hourly", tick)
    # two processes read the schedule due at the same time and fire the same tick
    [stored] = (await first._schedule_backend().due_schedules(tick, 10))[0]
    step = plan(decode_spec(stored.spec), stored.next_ms, tick)
    assert step is not None and step.tick_ms == tick
    outcomes = []
    for store in (first, second):
        job = NewJob(queue="q", params=b"null", max_attempts=1, delay_ms=0, scheduled_for_ms=tick)
        _, task = store._new_task(OWNER, METHOD, 60_000, job, await now_of(store))
        outcomes.append(await store._schedule_backend().fire_schedule(OWNER, stored, step, task))
    assert outcomes == [CreateOutcome.CREATED, None]
    [task] = await queued(first, "q")
    assert task.job is not None and task.job.scheduled_for is not None
    assert task.job.scheduled_for.timestamp() * 1000 == tick
    info = await named(second, "hourly")
    assert info.next_fire_at.timestamp() * 1000 == tick + HOUR_MS


@pytest.mark.anyio
async def test_a_step_is_refused_before_its_tick_on_the_store_clock(
    store: ts.GenericTaskStore,
) -> None:
    await store.schedule("hourly", owner_id=OWNER, request_method=METHOD, every_ms=HOUR_MS)
    [stored] = (await store._schedule_backend().due_schedules(float("inf"), 10))[0]
    early = plan(decode_spec(stored.spec), stored.next_ms, stored.next_ms)  # as if it were due
    assert early is not None
    assert await store._schedule_backend().fire_schedule(OWNER, stored, early, None) is None
    assert await named(store, "hourly") == schedule_info(stored)


# --- the loops: run_scheduler and run_worker ------------------------------------------------


class Flag:
    """A stop flag for both flavours of the loops."""

    def __init__(self) -> None:
        self.value = False

    def is_set(self) -> bool:
        return self.value


@pytest.mark.anyio
async def test_run_scheduler_submits_the_ticks_as_they_come(store: ts.GenericTaskStore) -> None:
    flag = Flag()
    async with async_background() as spawn:
        spawn(functools.partial(ts.run_scheduler, store, stop=flag))
        try:
            # made while the scheduler sleeps: the change wakes it
            await store.schedule("fast", owner_id=OWNER, request_method=METHOD, every_ms=50)
            leases = [await store.claim("default", timeout=BOUND_S) for _ in range(2)]
        finally:
            flag.value = True
    ticks = []
    for lease in leases:
        assert lease is not None
        job = (await store.get(lease.task_id, owner_id=OWNER)).job
        assert job is not None and job.scheduled_for is not None
        ticks.append(job.scheduled_for.timestamp() * 1000)
    assert ticks[0] < ticks[1] and ticks[1] % 50 == 0


@pytest.mark.anyio
async def test_run_worker_fires_the_schedules_and_runs_their_tasks(
    store: ts.GenericTaskStore,
) -> None:
    await store.schedule("fast", owner_id=OWNER, request_method=METHOD, every_ms=50, queue="q")
    flag = Flag()
    ran: list[str] = []

    async def handler(lease: ts.Lease) -> str:
        ran.append(lease.task_id)
        return "done"

    async with async_background() as spawn:
        spawn(
            functools.partial(
                ts.run_worker, store, handler, queue="q", stop=flag, handle_signals=False
            )
        )
        try:
            info = await named(store, "fast")
            for _ in range(int(BOUND_S / 0.05)):
                if info.last_task_id is not None:
                    break
                await anyio.sleep(0.05)
                info = await named(store, "fast")
            assert info.last_task_id is not None
            record = await store.wait(
                info.last_task_id, owner_id=OWNER, until_terminal=True, timeout=BOUND_S
            )
        finally:
            flag.value = True
    assert record.result == "done"
    assert info.last_task_id in ran
