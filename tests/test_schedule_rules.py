"""When schedules fire: ticks, catch-up, and cron across daylight-saving changes.

The rules are pure (``_core/schedules.py``); the last tests drive the in-memory backend
with an injected clock through a spring-forward and a fall-back night.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

import taskstore_redis as ts
from taskstore_redis._core import clock
from taskstore_redis._core.schedules import ScheduleSpec, plan, tick_after, tick_at_or_before

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTLY = ScheduleSpec(owner="o", method="m", cron="30 2 * * *", timezone="Europe/Berlin")
HOURLY = ScheduleSpec(owner="o", method="m", cron="0 * * * *", timezone="Europe/Berlin")


def ms(year: int, month: int, day: int, hour: int, minute: int) -> int:
    """A wall-clock time in Berlin, in ms since the epoch."""
    return int(datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp() * 1000)


def local(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, BERLIN).isoformat()


def test_an_interval_ticks_at_multiples_of_itself_since_the_epoch() -> None:
    spec = ScheduleSpec(owner="o", method="m", every_ms=200)
    assert tick_after(spec, 1_000) == 1_200
    assert tick_after(spec, 1_199) == 1_200
    assert tick_at_or_before(spec, 1_399) == 1_200
    assert tick_at_or_before(spec, 1_400) == 1_400


def test_a_nightly_cron_runs_once_on_the_night_without_its_hour_and_once_on_the_doubled_one() -> (
    None
):
    spring = [tick_after(NIGHTLY, ms(2026, 3, 28, 12, 0))]
    for _ in range(2):
        spring.append(tick_after(NIGHTLY, spring[-1]))
    # 02:30 does not exist on 29 March in Berlin: Debian cron runs it at 03:00
    assert [local(at) for at in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    autumn = [tick_after(NIGHTLY, ms(2026, 10, 24, 12, 0))]
    autumn.append(tick_after(NIGHTLY, autumn[-1]))
    # 02:30 comes twice on 25 October: it runs once
    assert [local(at) for at in autumn] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


def test_an_hourly_cron_skips_no_real_hour_across_a_change() -> None:
    ticks = [tick_after(HOURLY, ms(2026, 3, 29, 0, 30))]
    for _ in range(3):
        ticks.append(tick_after(HOURLY, ticks[-1]))
    assert [b - a for a, b in itertools.pairwise(ticks)] == [3_600_000] * 3
    assert tick_at_or_before(HOURLY, ms(2026, 3, 29, 3, 10)) == ms(2026, 3, 29, 3, 0)
    autumn = [tick_after(HOURLY, ms(2026, 10, 25, 0, 30))]
    for _ in range(3):
        autumn.append(tick_after(HOURLY, autumn[-1]))
    # 02:00 comes twice on 25 October: an hourly schedule fires in both
    assert [b - a for a, b in itertools.pairwise(autumn)] == [3_600_000] * 3


def test_catch_up_fires_the_latest_tick_once_or_none() -> None:
    spec = ScheduleSpec(owner="o", method="m", every_ms=1000)
    assert plan(spec, 5_000, 4_999) is None
    one = plan(spec, 5_000, 5_999)
    assert one is not None and (one.tick_ms, one.next_ms, one.due_at_ms) == (5_000, 6_000, 5_000)
    many = plan(spec, 5_000, 9_500)
    assert many is not None and (many.tick_ms, many.next_ms, many.due_at_ms) == (
        9_000,
        10_000,
        9_000,
    )
    skipped = plan(
        ScheduleSpec(owner="o", method="m", every_ms=1000, catch_up="skip"), 5_000, 9_500
    )
    assert skipped is not None and (skipped.tick_ms, skipped.next_ms) == (None, 10_000)


# --- the in-memory backend on an injected clock -------------------------------------------


class Clock:
    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms

    def __call__(self) -> int:
        return self.at_ms


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock(ms(2026, 3, 27, 12, 0))
    monkeypatch.setattr(clock, "now_ms", fake)
    yield fake


def fired(store: ts.GenericTaskStore) -> list[str]:
    ticks = []
    while (lease := store.claim("nightly", timeout=0)) is not None:
        job = store.get(lease.task_id, owner_id="ops").job
        assert job is not None and job.scheduled_for is not None
        ticks.append(job.scheduled_for.astimezone(BERLIN).isoformat())
        lease.complete(ts.TaskStatus.COMPLETED, None, "done")
    return ticks


@contextmanager
def nightly_store() -> Iterator[ts.GenericTaskStore]:
    """An in-memory store with a schedule at 02:30 each night in Berlin, made now."""
    config = ts.StoreConfig(default_ttl_ms=None)
    with ts.GenericTaskStore(ts.InMemoryBackend(), config) as store:
        store.schedule(
            "nightly",
            owner_id="ops",
            request_method="m",
            queue="nightly",
            cron="30 2 * * *",
            timezone="Europe/Berlin",
        )
        yield store


def test_a_cron_schedule_fires_through_a_spring_forward_night(fake_clock: Clock) -> None:
    with nightly_store() as store:
        for day in (28, 29, 30):
            fake_clock.at_ms = ms(2026, 3, day, 4, 0)  # each morning, after the night's tick
            store._fire_due_schedules()
            store._fire_due_schedules()
        assert fired(store) == [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
        ]


def test_a_cron_schedule_fires_once_in_a_fall_back_night(fake_clock: Clock) -> None:
    fake_clock.at_ms = ms(2026, 10, 24, 12, 0)
    with nightly_store() as store:
        # the first 02:30, then each quarter hour of the night, the second 02:30 included
        fake_clock.at_ms = ms(2026, 10, 25, 2, 30)
        for _ in range(12):
            store._fire_due_schedules()
            fake_clock.at_ms += 15 * 60_000
        assert datetime.fromtimestamp(fake_clock.at_ms / 1000, UTC) > datetime(
            2026, 10, 25, 3, 0, tzinfo=UTC
        )
        assert fired(store) == ["2026-10-25T02:30:00+02:00"]
