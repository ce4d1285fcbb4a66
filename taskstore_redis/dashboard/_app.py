"""The dashboard's Starlette app: its pages, its live updates and its actions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._async._store import GenericTaskStore
from .._core.errors import InvalidArgument, TaskExpired, TaskNotFound, TaskStoreError, WaitTimeout
from .._core.model import TaskRecord
from .._core.shown import age
from .._core.status import TaskStatus
from ._auth import COOKIE, Guard
from ._collect import Collector, Snapshot
from ._render import field, json_shown, json_text, shown, throughput_chart, until, when

logger = logging.getLogger("taskstore_redis.dashboard")
"""Every action (cancel, resubmit, pause, resume, sign-in) is logged here, with its client."""

_HERE = Path(__file__).parent
_FORM_LIMIT = 16_384
"""The largest form body read, in bytes."""
_WAIT_S = 15.0
"""A task's live view sends a keep-alive comment after this long without a change."""
_PARTS = ("params", "result", "variables")
_ACTIONS = ("cancel", "resubmit", "pause", "resume")

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The pages and actions over one store (see :func:`create_app`)."""

    def __init__(
        self, store: GenericTaskStore, token: str | None, read_only: bool, interval: float
    ) -> None:
        """Serve ``store``; act only with ``token``, and never when ``read_only``."""
        self.store = store
        self.guard = Guard(token)
        self.read_only = read_only
        self.collector = Collector(store, interval)
        self.interval = interval
        self.templates = Environment(
            loader=FileSystemLoader(_HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            shown=shown,
            field=field,
            age=age,
            when=when,
            json=json_shown,
        )
        self.templates.globals.update(chart=throughput_chart, until=until)

    # --- rendering --------------------------------------------------------------------------

    def context(self, request: Request, **values: Any) -> dict[str, Any]:
        """What every page's template gets: where it lives, who looks, the notice."""
        nonce = self.guard.session(request)
        return {
            "base": request.scope.get("root_path", "").rstrip("/"),
            "signed_in": nonce is not None,
            "can_act": nonce is not None and not self.read_only,
            "can_sign_in": self.guard.enabled and not self.read_only,
            "read_only": self.read_only,
            "csrf": self.guard.csrf(nonce) if nonce is not None else "",
            "notice": self.notice(request),
            "refresh_ms": round(self.interval * 1000),
            "now": datetime.now(UTC),
            **values,
        }

    def page(self, name: str, request: Request, status: int = 200, **values: Any) -> Response:
        """The template ``name`` rendered as a page."""
        html = self.templates.get_template(name).render(self.context(request, **values))
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    async def snapshot(self) -> Snapshot:
        """The shared snapshot; ``_Unavailable`` while the store cannot be read at all."""
        try:
            return await self.collector.snapshot()
        except TaskStoreError as exc:
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc

    # --- pages ------------------------------------------------------------------------------

    async def queues(self, request: Request) -> Response:
        """Every queue: its numbers, limits and last hour's throughput."""
        return self.page("queues.html", request, snapshot=await self.snapshot())

    async def workers(self, request: Request) -> Response:
        """Every worker seen holding a lease, with its tasks and their deadlines."""
        return self.page("workers.html", request, snapshot=await self.snapshot())

    async def failures(self, request: Request) -> Response:
        """The recent failures, newest first, of one queue or all."""
        snapshot = await self.snapshot()
        queue = request.query_params.get("queue", "")
        listed = [one for one in snapshot.failures if not queue or one.queue == queue]
        return self.page("failures.html", request, snapshot=snapshot, queue=queue, failures=listed)

    async def owners(self, request: Request) -> Response:
        """Owners' tasks in progress against the quota; one owner looked up on request."""
        owner = request.query_params.get("owner", "")
        looked_up: int | None = None
        problem = ""
        if owner:
            try:
                looked_up = await self.store.tasks_in_progress(owner_id=owner)
                self.collector.note_owner(owner)
            except InvalidArgument as exc:
                problem = str(exc)
        snapshot = await self.snapshot()
        return self.page(
            "owners.html",
            request,
            snapshot=snapshot,
            owner=owner,
            looked_up=looked_up,
            problem=problem,
        )

    async def task(self, request: Request) -> Response:
        """One task, looked up by id and owner, live while it runs."""
        task_id = request.query_params.get("id", "").strip()
        owner = request.query_params.get("owner", "").strip()
        if not task_id or not owner:
            return self.page("task.html", request, record=None, task_id=task_id, owner=owner)
        try:
            record = await self.store.get(task_id, owner_id=owner)
        except (TaskNotFound, TaskExpired, InvalidArgument) as exc:
            return self.page(
                "task.html",
                request,
                status=404,
                record=None,
                task_id=task_id,
                owner=owner,
                problem=f"{type(exc).__name__}: {exc}",
            )
        self.collector.note_owner(owner)
        return self.page("task.html", request, **self._task_values(record))

    def _task_values(self, record: TaskRecord) -> dict[str, Any]:
        return {
            "record": record,
            "task_id": record.task.task_id,
            "owner": record.owner_id,
            "terminal": record.task.status.is_terminal,
            "can_resubmit": record.job is not None
            and record.task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED),
            "parts": {part: getattr(record, part) for part in _PARTS},
            "query": urlencode({"id": record.task.task_id, "owner": record.owner_id}),
        }

    async def task_value(self, request: Request) -> Response:
        """One of a task's values (params, result, variables) whole, as JSON text."""
        part = request.query_params.get("part", "")
        if part not in _PARTS:
            return PlainTextResponse("part must be params, result or variables", 400)
        try:
            record = await self.store.get(
                request.query_params.get("id", ""), owner_id=request.query_params.get("owner", "")
            )
        except (TaskNotFound, TaskExpired, InvalidArgument) as exc:
            return PlainTextResponse(shown(f"{type(exc).__name__}: {exc}"), 404)
        text = json_text(getattr(record, part))
        return PlainTextResponse(text, headers=_HEADERS)

    async def task_events(self, request: Request) -> Response:
        """Server-sent events: the task's page body each time it changes, until it ends."""
        task_id = request.query_params.get("id", "")
        owner = request.query_params.get("owner", "")
        try:
            version = int(request.query_params.get("version", ""))
        except ValueError:
            return PlainTextResponse("version must be a whole number", 400)
        values = self.context(request)
        body = self.templates.get_template("task_body.html")

        async def events() -> AsyncIterator[str]:
            after = version
            while True:
                try:
                    record = await self.store.wait(
                        task_id, owner_id=owner, after_version=after, timeout=_WAIT_S
                    )
                except WaitTimeout:
                    yield ": still waiting\n\n"
                    continue
                except (TaskNotFound, TaskExpired, InvalidArgument):
                    yield "event: gone\ndata: \n\n"
                    return
                after = record.version
                html = body.render({**values, **self._task_values(record)})
                yield "event: task\n" + "".join(f"data: {line}\n" for line in html.split("\n"))
                yield "\n"
                if record.task.status.is_terminal:
                    yield "event: end\ndata: \n\n"
                    return

        headers = {**_HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    # --- signing in -------------------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        """GET: the sign-in form; POST: check the token and open a session."""
        if request.method == "GET":
            return self.page("sign_in.html", request, problem="")
        form = await _form(request)
        if not self.guard.enabled or self.read_only:
            return self._refused(request, "this dashboard is read-only")
        if not self.guard.token_matches(form.get("token", "")):
            logger.warning("sign-in refused (wrong token) from %s", _who(request))
            return self.page("sign_in.html", request, status=403, problem="wrong token")
        logger.info("signed in from %s", _who(request))
        response = RedirectResponse(self.base(request) + "/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.guard.new_session(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=self.base(request) + "/",
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        """Close the session (its cookie is dropped)."""
        response = RedirectResponse(self.base(request) + "/", status_code=303)
        response.delete_cookie(COOKIE, path=self.base(request) + "/")
        return response

    def notice(self, request: Request) -> str:
        """The notice of the action just done, if this dashboard signed it (never a crafted one)."""
        notice = request.query_params.get("notice", "")
        signed = request.query_params.get("sig", "")
        return notice if notice and self.guard.notice_matches(notice, signed) else ""

    # --- actions ----------------------------------------------------------------------------

    def _back(self, url: str, notice: str) -> Response:
        """Back to ``url`` after an action, with its notice, signed."""
        joiner = "&" if "?" in url else "?"
        query = urlencode({"notice": notice, "sig": self.guard.notice_mac(notice)})
        return RedirectResponse(f"{url}{joiner}{query}", status_code=303)

    async def act(self, request: Request) -> Response:
        """Cancel, resubmit, pause or resume, with the token, else refused and nothing written."""
        action = request.path_params["action"]
        if action not in _ACTIONS:
            return PlainTextResponse("no such action", 404)
        form = await _form(request)
        refusal = self._refusal(request, form)
        if refusal is not None:
            logger.warning("%s refused (%s) from %s", action, refusal, _who(request))
            return self._refused(request, refusal)
        base = self.base(request)
        try:
            if action in ("pause", "resume"):
                queue = form.get("queue", "")
                if action == "pause":
                    await self.store.pause_queue(queue)
                else:
                    await self.store.resume_queue(queue)
                logger.info("%s queue %r by %s", action, shown(queue), _who(request))
                done = f"queue {shown(queue)} {action}d"
                return self._back(base + "/", done)
            task_id, owner = form.get("id", ""), form.get("owner", "")
            if action == "cancel":
                record = await self.store.cancel(task_id, owner_id=owner)
                where = urlencode({"id": task_id, "owner": owner})
                done = "task cancelled"
            else:
                record = await self.store.resubmit(task_id, owner_id=owner)
                where = urlencode({"id": record.task.task_id, "owner": owner})
                done = f"resubmitted from {shown(task_id)}"
            logger.info(
                "%s task %r of owner %r by %s (now %s)",
                action,
                shown(task_id),
                shown(owner),
                _who(request),
                record.task.task_id,
            )
            return self._back(f"{base}/task?{where}", done)
        except TaskStoreError as exc:
            logger.info("%s by %s failed: %s", action, _who(request), shown(f"{exc}", None))
            return self.page(
                "refused.html",
                request,
                status=409 if not isinstance(exc, InvalidArgument) else 400,
                heading="Not done",
                why=f"{type(exc).__name__}: {exc}",
            )

    def _refusal(self, request: Request, form: dict[str, str]) -> str | None:
        """Why this request may not act, or None."""
        if self.read_only:
            return "this dashboard is read-only"
        if self.guard.bearer(request):
            return None
        nonce = self.guard.session(request)
        if nonce is None:
            return "sign in with the token first"
        if not self.guard.csrf_matches(nonce, form.get("csrf", "")):
            return "the form's CSRF value is missing or wrong"
        return None

    def _refused(self, request: Request, why: str) -> Response:
        return self.page("refused.html", request, status=403, why=why)

    @staticmethod
    def base(request: Request) -> str:
        """Where the app is mounted: ``""`` at the root, ``/prefix`` under a mount."""
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/")


class _Unavailable(Exception):
    """The store could not be read for a page (shown as a 503 page)."""


async def _form(request: Request) -> dict[str, str]:
    """The request's url-encoded form, first value of each field (no multipart)."""
    if request.method != "POST":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _who(request: Request) -> str:
    client = request.client
    return "unknown client" if client is None else f"{client.host}:{client.port}"


def create_app(
    store: GenericTaskStore,
    *,
    token: str | None = None,
    read_only: bool | None = None,
    interval: float = 2.0,
) -> Starlette:
    """The dashboard of ``store`` as a Starlette (ASGI) app, to serve or to mount.

    ``store`` is an async store (``taskstore_redis.asyncio.GenericTaskStore``) that
    the caller opens and closes. Without ``token`` the dashboard is read-only;
    with it, a browser signs in with the token (or a program sends
    ``Authorization: Bearer TOKEN``) to cancel and resubmit tasks and to pause and
    resume queues; ``read_only=True`` refuses every action even then. Every action
    is logged on the ``taskstore_redis.dashboard`` logger with its client address.

    The pages read one shared snapshot of the store, read again at most every
    ``interval`` seconds whatever the number of open pages, and refresh
    themselves at that pace (they read the same without JavaScript). Mount it
    under a prefix with ``Mount("/tasks", app=create_app(store))``: its links and
    forms follow the prefix.

    Raises:
        ValueError: ``read_only=False`` without a token, or ``interval`` not above 0.

    """
    if read_only is None:
        read_only = token is None
    if not read_only and token is None:
        raise ValueError("actions need a token: give token=..., or read_only=True")
    if token is not None and not token:
        raise ValueError("the token must not be empty")
    if not interval > 0:
        raise ValueError(f"interval must be above 0 seconds, got {interval!r}")
    dashboard = Dashboard(store, token, read_only, interval)
    routes = [
        Route("/", dashboard.queues, name="queues"),
        Route("/workers", dashboard.workers, name="workers"),
        Route("/failures", dashboard.failures, name="failures"),
        Route("/owners", dashboard.owners, name="owners"),
        Route("/task", dashboard.task, name="task"),
        Route("/task/value", dashboard.task_value, name="task_value"),
        Route("/task/events", dashboard.task_events, name="task_events"),
        Route("/sign-in", dashboard.sign_in, methods=["GET", "POST"], name="sign_in"),
        Route("/sign-out", dashboard.sign_out, methods=["POST"], name="sign_out"),
        Route(
            "/actions/{action:str}",
            dashboard.act,
            methods=["POST"],
            name="act",
        ),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]

    async def unavailable(request: Request, exc: Exception) -> Response:
        why = str(exc)
        return dashboard.page("refused.html", request, 503, heading="Store unavailable", why=why)

    app = Starlette(routes=routes, exception_handlers={_Unavailable: unavailable})
    app.state.dashboard = dashboard
    return app
