"""``taskstore-redis schedules``, ``unschedule`` and ``top``'s next fires, on a real server.

The store the tests look through is the one the commands work on (same URL and prefix);
every command is run in-process through ``main``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

import taskstore_redis as ts
from taskstore_redis._cli.main import main
from tests.test_cli_options import one_error_line

pytestmark = pytest.mark.redis

HOUR_MS = 3_600_000


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def where(redis_url: str) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", f"sch-{uuid.uuid4().hex[:8]}"]


@pytest.fixture
def store(where: list[str]) -> Iterator[ts.GenericTaskStore]:
    with ts.GenericTaskStore.from_url(where[1], prefix=where[3]) as opened:
        yield opened


def test_schedules_lists_every_schedule_as_a_table_or_json(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedules", *where]) == 0
    assert "no schedule under key prefix" in capsys.readouterr().out
    nightly = store.schedule(
        "nightly",
        owner_id="ops",
        request_method="reports/build",
        cron="30 2 * * *",
        timezone="Europe/Berlin",
        queue="reports",
    )
    store.schedule("hourly", owner_id="ops", request_method="sync", every_ms=HOUR_MS)
    assert main(["schedules", "--json", *where]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [one["name"] for one in listed] == ["hourly", "nightly"]
    assert listed[1]["cron"] == "30 2 * * *" and listed[1]["queue"] == "reports"
    assert listed[1]["next_fire_at"] == nightly.next_fire_at.isoformat().replace("+00:00", "Z")
    assert main(["schedules", *where]) == 0
    table = capsys.readouterr().out
    for text in ("nightly", "reports/build", "cron 30 2 * * * (Europe/Berlin)", "every 1 h"):
        assert text in table


def test_a_control_character_is_shown_escaped(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.schedule("odd", owner_id="a\x1b[2Jb", request_method="m\x07", every_ms=HOUR_MS)
    assert main(["schedules", *where]) == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\x07" not in table
    assert "a\\x1b[2Jb" in table


def test_unschedule_deletes_a_schedule_and_says_when_there_was_none(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.schedule("hourly", owner_id="ops", request_method="sync", every_ms=HOUR_MS)
    assert main(["unschedule", "hourly", *where]) == 0
    assert "schedule 'hourly' deleted" in capsys.readouterr().out
    assert store.schedules() == []
    assert main(["unschedule", "hourly", *where]) == 0
    assert "no schedule 'hourly'" in capsys.readouterr().out


def test_unschedule_of_an_empty_name_is_one_error_line(
    where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["unschedule", "", *where]) == 2
    assert "NAME must not be empty" in one_error_line(capsys)


def test_top_shows_the_next_fires(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.schedule("hourly", owner_id="ops", request_method="sync", every_ms=HOUR_MS, queue="q")
    assert main(["top", "--once", "--interval", "0.05", "--json", *where]) == 0
    [frame] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [fire] = frame["schedules"]
    assert (fire["name"], fire["queue"], fire["last_fire_at"]) == ("hourly", "q", None)
    assert 0 < fire["next_fire_in_ms"] <= HOUR_MS
    assert main(["top", "--once", "--interval", "0.05", *where]) == 0
    screen = capsys.readouterr().out
    assert "next fires" in screen and "hourly" in screen
