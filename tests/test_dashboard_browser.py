"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

A ``taskstore-redis dashboard`` and a ``taskstore-redis worker`` run as commands
on a throwaway Redis (standalone, then cluster); the tests load every page, watch
a queue's numbers move as the worker runs, find a failed task and open it, follow
a running task live, cancel and pause with the token and get refused without it,
and read the pages with JavaScript off. Each page's screenshot (PNG) is saved in
``screenshots/`` at the repository's root (CI keeps it).

Without Chromium these tests skip, saying so; with the ``CI`` environment variable
set they fail instead, so CI never passes without them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

import taskstore_redis as ts

pytestmark = pytest.mark.slow  # commands in subprocesses and a browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "screenshots"
OWNER = "browser-owner"
TOKEN = "browser-test-token"
BOUND_S = 30.0
"""How long anything may take before a test fails (never reached when all is well)."""
WAIT_MS = int(BOUND_S * 1000)

HANDLERS = textwrap.dedent(
    """
    import time



    def work(lease):
        params = lease.params or {}
        time.sleep(params.get("sleep", 0))
        if params.get("fail"):
            raise ValueError(params["fail"])
        return {"ok": True}
    """
)


def chromium() -> str:
    """The system's Chromium, or skip (fail when ``CI`` is set) saying what to install."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        why = "no chromium on PATH: apt-get install chromium (the dashboard's browser tests)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield launched
    launched.close()


@dataclass
class Live:
    """A dashboard command and a worker command on one key prefix."""

    kind: str
    url: str
    store: ts.GenericTaskStore
    log: Path
    """The dashboard command's output."""

    def submit(self, queue: str, **params: object) -> str:
        record = self.store.submit(
            "tools/call", params, owner_id=OWNER, queue=queue, max_attempts=1
        )
        return record.task.task_id

    def task_url(self, task_id: str) -> str:
        return f"{self.url}task?id={task_id}&owner={OWNER}"

    def shot(self, page: Page, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{self.kind}-{name}.png", full_page=True)


def _command(*arguments: str, cwd: Path, log: str) -> subprocess.Popen[str]:
    """The command in a subprocess, its output in the file ``log`` of ``cwd`` (no pipe to fill)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    with (cwd / log).open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "taskstore_redis", *arguments],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _address(proc: subprocess.Popen[str], log: Path) -> str:
    """The dashboard's address, from the line it prints as it starts."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r" at (http://127\.0\.0\.1:\d+/)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise AssertionError(f"the dashboard did not start: {log.read_text()}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(BOUND_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ],
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    kind: str = request.param
    chromium()  # before anything is started
    url: str = request.getfixturevalue("redis_url" if kind == "redis" else "cluster_url")
    prefix = f"dash{uuid.uuid4().hex[:10]}"
    where = tmp_path_factory.mktemp(f"dashboard-{kind}")
    (where / "dashjobs.py").write_text(HANDLERS)
    (where / "token").write_text(TOKEN + "\n")
    redis = ["--redis-url", url, "--prefix", prefix]
    options = ["--port", "0", "--interval", "0.2", "--token-file", "token"]
    dashboard = _command("dashboard", *redis, *options, cwd=where, log="dashboard.log")
    work = ["dashjobs:work", "--queue", "jobs", "--concurrency", "4"]
    worker = _command("worker", *work, *redis, cwd=where, log="worker.log")
    try:
        address = _address(dashboard, where / "dashboard.log")
        with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:
            yield Live(kind, address, store, where / "dashboard.log")
    finally:
        for proc in (worker, dashboard):
            _stop(proc)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    yield opened
    context.close()


def test_the_queues_page_follows_the_numbers_as_the_worker_runs(live: Live, page: Page) -> None:
    live.store.pause_queue("jobs")  # the worker's: its tasks wait until it is resumed
    for _ in range(3):
        live.submit("jobs")
    page.goto(live.url)
    row = page.locator('tr[data-queue="jobs"]')
    expect(row.locator("td.ready")).to_have_text("3", timeout=WAIT_MS)
    expect(row.locator("td.state")).to_have_text("paused")
    live.store.resume_queue("jobs")
    # the page refreshes itself: no reload
    expect(row.locator("td.completed")).to_have_text("3", timeout=WAIT_MS)
    expect(row.locator("td.ready")).to_have_text("0")
    expect(row.locator("td.state")).to_have_text("running")
    expect(row.locator("svg.chart rect.completed").first).to_be_attached(timeout=WAIT_MS)
    live.shot(page, "queues")


def test_a_failed_task_is_found_and_opened(live: Live, page: Page) -> None:
    page.goto(f"{live.url}failures?queue=jobs")  # watching while the task runs
    task_id = live.submit("jobs", sleep=1.0, fail="card declined <b>\x1b[31m")
    link = page.locator(f'a.task:has-text("{task_id}")')
    expect(link).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("table.failures")).to_contain_text("card declined <b>\\x1b[31m")
    live.shot(page, "failures")
    link.click()
    expect(page.locator("td.status")).to_have_text("failed")
    expect(page.locator("table.task")).to_contain_text("card declined <b>\\x1b[31m")
    expect(page.locator("pre.result")).to_contain_text('"type": "ValueError"')
    expect(page.locator("table.job")).to_contain_text("1 of 1")
    live.shot(page, "task-failed")


def test_the_workers_page_shows_each_worker_with_its_leases(live: Live, page: Page) -> None:
    page.goto(f"{live.url}workers")
    task_id = live.submit("jobs", sleep=4.0)
    held = page.locator(f'section.worker:has-text("{task_id}")')
    expect(held).to_be_visible(timeout=WAIT_MS)
    expect(held.locator("h2")).to_contain_text(":")  # the worker command's host:pid
    expect(held).to_contain_text(" (in ")  # its lease deadline
    live.shot(page, "workers")


def test_the_owners_page_counts_tasks_in_progress_against_the_quota(live: Live, page: Page) -> None:
    live.store.pause_queue("q-owners")
    live.store.set_limits("q-owners", max_concurrency=2, per_second=5)
    live.submit("q-owners")
    page.goto(f"{live.url}owners?owner={OWNER}")
    expect(page.locator("p.looked-up")).to_contain_text(
        f"{OWNER}: 1 task(s) in progress of 100.", timeout=WAIT_MS
    )
    expect(page.locator("table.owners")).to_contain_text(OWNER, timeout=WAIT_MS)
    live.shot(page, "owners")


def test_a_running_task_is_followed_live(live: Live, page: Page) -> None:
    task_id = live.submit("jobs", sleep=2.0)
    page.goto(live.task_url(task_id))
    expect(page.locator("td.status")).to_have_text("working")
    expect(page.locator("#task[data-live=ended]")).to_be_attached(timeout=WAIT_MS)
    expect(page.locator("td.status")).to_have_text("completed")
    expect(page.locator("pre.result")).to_contain_text('"ok": true')
    live.shot(page, "task-live")


def test_with_the_token_a_task_is_cancelled_and_a_queue_paused(live: Live, page: Page) -> None:
    page.goto(f"{live.url}sign-in")
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Sign in')")
    expect(page.locator("nav")).to_contain_text("Sign out")
    task_id = live.submit("q-cancel")  # no worker takes from q-cancel: it stays working
    page.goto(live.task_url(task_id))
    page.click("button:has-text('Cancel task')")
    expect(page.locator("p.notice")).to_have_text("task cancelled")
    expect(page.locator("td.status")).to_have_text("cancelled")
    assert live.store.get(task_id, owner_id=OWNER).task.status.value == "cancelled"
    page.goto(live.url)
    row = page.locator('tr[data-queue="q-cancel"]')
    row.locator("button:has-text('Pause')").click()
    expect(page.locator("p.notice")).to_have_text("queue q-cancel paused")
    expect(row.locator("td.state")).to_have_text("paused")
    assert live.store.queue_stats("q-cancel").paused
    row.locator("button:has-text('Resume')").click()
    expect(page.locator("p.notice")).to_have_text("queue q-cancel resumed")
    expect(row.locator("td.state")).to_have_text("running")
    assert not live.store.queue_stats("q-cancel").paused
    logged = live.log.read_text()  # the command logs every action with its client
    assert f"cancel task '{task_id}' of owner '{OWNER}' by 127.0.0.1:" in logged
    assert "pause queue 'q-cancel' by 127.0.0.1:" in logged
    assert "resume queue 'q-cancel' by 127.0.0.1:" in logged
    assert TOKEN not in logged


def test_without_the_token_nothing_is_offered_and_an_action_is_refused(
    live: Live, page: Page
) -> None:
    live.submit("q-refused")
    page.goto(live.url)
    expect(page.locator('tr[data-queue="q-refused"]')).to_be_visible()
    expect(page.locator("main button")).to_have_count(0)
    live.shot(page, "queues-signed-out")
    refused = page.request.post(f"{live.url}actions/pause", form={"queue": "q-refused"})
    assert refused.status == 403
    assert "sign in with the token first" in refused.text()
    assert not live.store.queue_stats("q-refused").paused


def test_every_page_reads_with_javascript_off(live: Live, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live.url)
        expect(page.locator('tr[data-queue="jobs"] td.state')).to_have_text("running")
        for path, text in (
            ("workers", "Workers"),
            ("failures", "card declined"),
            ("owners", OWNER),
            ("task", "Task id"),
        ):
            page.goto(live.url + path)
            expect(page.locator("main")).to_contain_text(text)
    finally:
        context.close()
