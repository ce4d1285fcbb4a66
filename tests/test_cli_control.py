"""``taskstore-redis pause``, ``resume``, ``resubmit`` and ``queues``: an operator's hand, on a
real server.

The store the tests look through is the one the commands work on (same URL and
prefix); every command is run in-process through ``main``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import taskstore_redis as ts
from taskstore_redis._cli.main import main
from tests.test_cli_options import one_error_line

pytestmark = pytest.mark.redis

OWNER = "ops"


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def where(redis_url: str) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", f"ctl-{uuid.uuid4().hex[:8]}"]


@pytest.fixture
def store(where: list[str]) -> Iterator[ts.GenericTaskStore]:
    with ts.GenericTaskStore.from_url(where[1], prefix=where[3]) as opened:
        yield opened


def queues_json(where: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["queues", "--json", *where]) == 0
    return {one["queue"]: one for one in json.loads(capsys.readouterr().out)}


def test_pause_stops_claims_shows_in_queues_and_resume_restarts_them(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.submit("tools/call", "p", owner_id=OWNER, queue="mail")
    assert main(["pause", "mail", *where]) == 0
    assert "queue 'mail' paused" in capsys.readouterr().out
    assert store.claim("mail", timeout=0) is None
    assert queues_json(where, capsys)["mail"]["paused"] is True
    assert main(["queues", *where]) == 0
    table = capsys.readouterr().out
    assert "paused" in table and "running" not in table
    assert main(["resume", "mail", *where]) == 0
    assert "queue 'mail' resumed" in capsys.readouterr().out
    assert queues_json(where, capsys)["mail"]["paused"] is False
    lease = store.claim("mail", timeout=5)
    assert lease is not None and lease.params == "p"


def test_resubmit_makes_a_new_task_from_a_failed_one(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.submit("tools/call", {"n": 2}, owner_id=OWNER, queue="mail", priority=3)
    lease = store.claim("mail", timeout=5)
    assert lease is not None
    lease.complete(ts.TaskStatus.FAILED, "broke", {"error": "broke"})
    assert main(["resubmit", lease.task_id, "--owner", OWNER, "--json", *where]) == 0
    task = json.loads(capsys.readouterr().out)
    again = store.get(task["taskId"], owner_id=OWNER)
    assert again.job is not None and again.job.resubmitted_from == lease.task_id
    assert (again.params, again.job.priority) == ({"n": 2}, 3)
    assert main(["resubmit", lease.task_id, "--owner", OWNER, *where]) == 0
    assert f"(from {lease.task_id})" in capsys.readouterr().out
    assert store.queue_stats("mail").ready == 2


def test_resubmitting_a_working_task_is_one_line_and_writes_nothing(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    record = store.submit("tools/call", owner_id=OWNER, queue="mail")
    assert main(["resubmit", record.task.task_id, "--owner", OWNER, *where]) == 2
    line = one_error_line(capsys)
    assert "only a failed or cancelled task can be resubmitted" in line
    assert store.queue_stats("mail").submitted == 1


def test_resubmitting_an_unknown_task_is_one_line(
    where: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["resubmit", "no-such-task", "--owner", OWNER, *where]) != 0
    assert "no-such-task" in one_error_line(capsys)


def test_limits_are_set_shown_and_listed_with_the_queues(
    where: list[str], store: ts.GenericTaskStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.submit("tools/call", owner_id=OWNER, queue="mail")
    assert main(["limits", "mail", "--max-concurrency", "3", *where]) == 0
    assert "queue 'mail': at most 3 at once" in capsys.readouterr().out
    argv = ["limits", "mail", "--group", "t1", "--per-second", "50", "--burst", "5", "--json"]
    assert main([*argv, *where]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["limits"]["max_concurrency"] == 3
    assert shown["groups"]["t1"] == {"max_concurrency": None, "per_second": 50.0, "burst": 5}
    assert store.limits("mail").groups["t1"].per_second == 50.0
    assert queues_json(where, capsys)["mail"]["limits"]["limits"]["max_concurrency"] == 3
    assert main(["queues", *where]) == 0
    assert "at most 3 at once (+1 group(s))" in capsys.readouterr().out
    assert main(["limits", "mail", "--clear", *where]) == 0
    assert "queue 'mail': no limit" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["limits", "q", "--burst", "3"], "--burst needs a --per-second"),
        (["limits", "q", "--clear", "--max-concurrency", "1"], "--clear takes no limit"),
        (["limits", ""], "queue"),
        (["pause", ""], "queue"),
        (["resume", "q" * 300], "queue"),
        (["resubmit", "t", "--owner", "a", "--delay-ms", "-1"], "delay_ms"),
        (["resubmit", "t", "--owner", "a\x1b[2J" * 6000], "--owner"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2_before_the_server_is_reached(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    line = one_error_line(capsys)
    assert says in line and line.isprintable(), line
