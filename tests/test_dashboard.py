"""The dashboard over HTTP: escaping, tokens, CSRF, read-only, a prefix, pages without JavaScript.

Most tests use the in-memory backend through Starlette's TestClient (the store is
used inside the client's event loop, through its portal); the pages' reads on
Redis and Redis Cluster are covered by ``test_pages_read_the_store`` here and by the
browser tests (tests/test_dashboard_browser.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import taskstore_redis.asyncio as ts
from taskstore_redis import SecurityConfig
from taskstore_redis._cli.main import main
from taskstore_redis.dashboard import create_app
from taskstore_redis.dashboard._collect import HISTORY_MINUTES, _History

TOKEN = "token-for-tests"
OWNER = "owner-1"
T = TypeVar("T")


class Site:
    """A dashboard app, its TestClient and its store (used in the client's event loop)."""

    def __init__(self, client: TestClient, store: ts.GenericTaskStore) -> None:
        self.client = client
        self.store = store

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        portal = self.client.portal
        assert portal is not None
        return portal.call(call)

    def submit(self, params: Any = None, queue: str = "jobs", owner: str = OWNER) -> str:
        record = self.run(
            lambda: self.store.submit("tools/call", params or {}, owner_id=owner, queue=queue)
        )
        return record.task.task_id

    def sign_in(self, base: str = "") -> str:
        """Sign in with the token; return the CSRF value of the forms."""
        reply = self.client.post(f"{base}/sign-in", data={"token": TOKEN})
        assert reply.status_code == 200, reply.text
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', self.client.get(f"{base}/").text)
        assert found is not None
        return found.group(1)


def site(**options: Any) -> Iterator[Site]:
    store = ts.GenericTaskStore(ts.InMemoryBackend(), security=options.pop("security", None))
    app = create_app(store, **options)
    with TestClient(app) as client:
        yield Site(client, store)


@pytest.fixture
def admin() -> Iterator[Site]:
    """A dashboard with the token, read again at every request."""
    yield from site(token=TOKEN, interval=0.001)


@pytest.fixture
def viewer() -> Iterator[Site]:
    """A read-only dashboard (no token)."""
    yield from site(interval=0.001)


def paused(at: Site, queue: str = "jobs") -> bool:
    return at.run(lambda: at.store.queue_stats(queue)).paused


HOSTILE = "<img src=x onerror=alert(1)>\x1b[31mred\u202e"


def test_every_value_is_escaped_and_control_characters_are_shown(admin: Site) -> None:
    task_id = admin.submit({"html": HOSTILE}, owner=HOSTILE)
    admin.run(
        lambda: admin.store.update_status(task_id, "input_required", HOSTILE, owner_id=HOSTILE)
    )
    for path in ("/task", "/owners"):
        page = admin.client.get(path, params={"id": task_id, "owner": HOSTILE}).text
        assert "<img" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "\x1b" not in page and "\u202e" not in page
        assert "\\x1b[31mred\\u202e" in page  # shown, not obeyed
    task_page = admin.client.get("/task", params={"id": task_id, "owner": HOSTILE})
    assert "\\u001b[31mred\\u202e" in task_page.text  # inside the params' JSON
    assert "script-src 'self'" in task_page.headers["content-security-policy"]


def test_a_large_value_is_cut_with_a_link_to_see_it_whole(admin: Site) -> None:
    big = {"text": "x" * 10_000 + "END"}
    task_id = admin.submit(big)
    page = admin.client.get("/task", params={"id": task_id, "owner": OWNER}).text
    assert "END" not in page
    link = re.search(r'href="(/task/value\?[^"]*part=params)"', page)
    assert link is not None
    whole = admin.client.get(link.group(1).replace("&amp;", "&"))
    assert whole.headers["content-type"].startswith("text/plain")
    assert '"text": "' + "x" * 10_000 + 'END"' in whole.text


def test_read_only_shows_no_action_and_refuses_every_one(
    viewer: Site, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = viewer.submit()
    for path in ("/", f"/task?id={task_id}&owner={OWNER}"):
        page = viewer.client.get(path).text
        assert '<form method="post"' not in page and "read-only" in page
    caplog.set_level(logging.INFO, "taskstore_redis.dashboard")
    refused = [
        viewer.client.post("/actions/pause", data={"queue": "jobs"}),
        viewer.client.post("/actions/cancel", data={"id": task_id, "owner": OWNER}),
        viewer.client.post(
            "/actions/pause", data={"queue": "jobs"}, headers={"Authorization": f"Bearer {TOKEN}"}
        ),
        viewer.client.post("/sign-in", data={"token": TOKEN}),
    ]
    assert [reply.status_code for reply in refused] == [403] * 4
    assert not paused(viewer)
    record = viewer.run(lambda: viewer.store.get(task_id, owner_id=OWNER))
    assert record.task.status.value == "working"
    assert "pause refused (this dashboard is read-only) from testclient" in caplog.text


def test_without_the_token_or_the_csrf_value_an_action_is_refused_and_nothing_written(
    admin: Site,
) -> None:
    admin.submit()
    assert admin.client.post("/actions/pause", data={"queue": "jobs"}).status_code == 403
    wrong = admin.client.post("/sign-in", data={"token": "not-it"})
    assert wrong.status_code == 403 and "wrong token" in wrong.text
    bearer = {"Authorization": "Bearer not-it"}
    assert (
        admin.client.post("/actions/pause", data={"queue": "jobs"}, headers=bearer).status_code
        == 403
    )
    admin.sign_in()
    no_csrf = admin.client.post("/actions/pause", data={"queue": "jobs"})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    forged = admin.client.post("/actions/pause", data={"queue": "jobs", "csrf": "0" * 64})
    assert forged.status_code == 403
    assert not paused(admin)


def test_with_the_token_every_action_acts_and_is_logged_with_its_client(
    admin: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "taskstore_redis.dashboard")
    task_id = admin.submit()
    csrf = admin.sign_in()
    reply = admin.client.post("/actions/pause", data={"queue": "jobs", "csrf": csrf})
    assert reply.status_code == 200 and "queue jobs paused" in reply.text
    assert paused(admin)
    admin.client.post("/actions/resume", data={"queue": "jobs", "csrf": csrf})
    assert not paused(admin)
    cancelled = admin.client.post(
        "/actions/cancel", data={"id": task_id, "owner": OWNER, "csrf": csrf}
    )
    assert "task cancelled" in cancelled.text and "status-cancelled" in cancelled.text
    again = admin.client.post(
        "/actions/resubmit", data={"id": task_id, "owner": OWNER, "csrf": csrf}
    )
    assert again.status_code == 200 and f"resubmitted from {task_id}" in again.text
    assert admin.run(lambda: admin.store.queue_stats("jobs")).ready == 1  # the new task
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    admin.client.cookies.clear()
    assert (
        admin.client.post("/actions/pause", data={"queue": "jobs"}, headers=bearer).status_code
        == 200
    )
    assert paused(admin)
    logged = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("pause queue 'jobs' by testclient:") for line in logged)
    assert any(
        line.startswith(f"cancel task '{task_id}' of owner '{OWNER}' by testclient:")
        for line in logged
    )
    assert any(line.startswith(f"resubmit task '{task_id}'") for line in logged)
    assert TOKEN not in caplog.text


def test_a_refused_store_operation_is_a_page_not_an_error(admin: Site) -> None:
    task_id = admin.submit()
    csrf = admin.sign_in()
    reply = admin.client.post(
        "/actions/resubmit", data={"id": task_id, "owner": OWNER, "csrf": csrf}
    )
    assert reply.status_code == 400 and "only a failed or cancelled task" in reply.text


def test_mounted_under_a_prefix_links_and_forms_follow_it() -> None:
    store = ts.GenericTaskStore(ts.InMemoryBackend())
    outer = Starlette(routes=[Mount("/ops/tasks", app=create_app(store, token=TOKEN))])
    with TestClient(outer) as client:
        at = Site(client, store)
        at.submit()
        page = client.get("/ops/tasks/").text
        links = re.findall(r'(?:href|src|action)="([^"]+)"', page)
        assert links and all(link.startswith("/ops/tasks/") for link in links), links
        for link in links:
            if "sign-in" in link or link.endswith((".js", ".css")) or "/failures" in link:
                assert client.get(link).status_code == 200, link
        csrf = at.sign_in("/ops/tasks")
        page = client.get("/ops/tasks/").text
        form = re.search(r'<form method="post" action="([^"]+)"', page.split("<main")[1])
        assert form is not None and form.group(1) == "/ops/tasks/actions/pause"
        reply = client.post(form.group(1), data={"queue": "jobs", "csrf": csrf})
        assert str(reply.url).startswith("http://testserver/ops/tasks/?notice=")
        assert paused(at)


def test_the_queues_page_counts_the_tasks_waiting_for_their_parents(viewer: Site) -> None:
    parent = viewer.submit()
    viewer.run(
        lambda: viewer.store.submit("tools/call", {}, owner_id=OWNER, queue="jobs", after=[parent])
    )
    page = viewer.client.get("/").text
    row = re.search(r'<tr data-queue="jobs">(.*?)</tr>', page, re.S)
    assert row is not None
    assert '<td class="ready num">1</td>' in row.group(1)
    assert re.search(r'<td class="waiting num"[^>]*>1</td>', row.group(1)), row.group(1)


def test_only_the_dashboards_own_notices_are_shown_never_a_crafted_one(admin: Site) -> None:
    crafted = admin.client.get("/", params={"notice": "all tasks lost: call 555-0100"})
    assert "555-0100" not in crafted.text
    admin.submit()
    csrf = admin.sign_in()
    reply = admin.client.post("/actions/pause", data={"queue": "jobs", "csrf": csrf})
    assert '<p class="notice"' in reply.text and "queue jobs paused" in reply.text
    forged = str(reply.url).replace("queue+jobs+paused", "queue+jobs+deleted")
    assert "queue jobs deleted" not in admin.client.get(forged).text


def test_pages_read_whole_without_javascript(viewer: Site) -> None:
    viewer.submit(queue="emails")
    viewer.submit(queue="emails")
    page = viewer.client.get("/").text
    row = re.search(r'<tr data-queue="emails">(.*?)</tr>', page, re.S)
    assert row is not None
    assert '<td class="ready num">2</td>' in row.group(1)
    assert "<svg" in row.group(1) and "<title>completed and failed per minute" in row.group(1)
    for path in ("/workers", "/failures", "/owners", "/task"):
        reply = viewer.client.get(path)
        assert reply.status_code == 200 and "<noscript" not in reply.text


def test_owners_page_shows_tasks_in_progress_against_the_quota() -> None:
    for at in site(token=TOKEN, interval=0.001, security=SecurityConfig(max_tasks_per_owner=4)):
        at.submit(owner="alice")
        at.submit(owner="alice")
        page = at.client.get("/owners", params={"owner": "alice"}).text
        assert "alice: 2 task(s) in progress of 4." in page
        page = at.client.get("/owners").text  # followed from now on
        assert '<meter min="0" max="4" value="2">' in page


def test_any_number_of_viewers_share_one_read_per_interval() -> None:
    for at in site(interval=3600):
        at.submit()
        for path in ("/", "/workers", "/failures", "/owners") * 10:
            assert at.client.get(path).status_code == 200
        assert at.client.app.state.dashboard.collector.refreshes == 1  # type: ignore[attr-defined]


def test_create_app_refuses_actions_without_a_token() -> None:
    store = ts.GenericTaskStore(ts.InMemoryBackend())
    with pytest.raises(ValueError, match="actions need a token"):
        create_app(store, read_only=False)
    with pytest.raises(ValueError, match="interval"):
        create_app(store, interval=0)
    app = create_app(store, token=TOKEN, read_only=True)
    with TestClient(app) as client:
        assert client.post("/sign-in", data={"token": TOKEN}).status_code == 403


def test_throughput_is_spread_over_the_minutes_between_readings() -> None:
    history = _History()
    start = 60 * 16_667 + 20.0  # 20 s into a minute
    history.add(start, 0, 0)
    history.add(start + 30, 30, 3)  # within one minute
    history.add(start + 150, 150, 3)  # 120 s later: 120 spread over three minutes
    completed, failed = history.per_minute(start + 150)
    assert len(completed) == HISTORY_MINUTES
    assert completed[-3:] == [pytest.approx(30 + 10), pytest.approx(60), pytest.approx(50)]
    assert failed[-3:] == [pytest.approx(3.0), pytest.approx(0.0), pytest.approx(0.0)]
    assert completed[0] is None  # no reading covers it


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
        (["--token", " "], "--token must not be empty"),
        (["--token", "a", "--token-file", "f"], "not allowed with argument"),
        (["--port", "70000"], "must be from 0 to 65535"),
    ],
)
def test_the_command_says_a_mistake_in_one_line(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dashboard", "--redis-url", "redis://:secret-pw@127.0.0.1:1", *options])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "secret-pw" not in err and "Traceback" not in err


def test_a_store_that_cannot_be_read_is_a_503_page() -> None:
    store = ts.GenericTaskStore.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    with TestClient(create_app(store)) as client:
        reply = client.get("/")
        assert reply.status_code == 503
        assert "Store unavailable" in reply.text and "StoreUnavailable" in reply.text
        Site(client, store).run(store.aclose)
