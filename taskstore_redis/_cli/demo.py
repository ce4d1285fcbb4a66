"""``taskstore-redis demo``: worker processes share one store, and the demo checks the outcome.

The parent creates the tasks, then worker processes (or, with the in-memory
backend, groups of coroutines in this process) take them through the MCP Tasks
life cycle while the parent plays the client: it answers every task that asks
for input, cancels some tasks while they run, and polls until each one is
terminal. At the end a fresh store lists every owner's tasks through all pages
and checks each task against what the workers and the client reported.

Every task ``i`` follows a plan known in advance:

- a worker merges ``{"worker": w}``, then ``{"step1": ...}``, ``{"step2": ...}``,
  ``{"step3": ...}`` (values computed from the seed and ``i``);
- it moves the task to ``input_required`` and polls until the client has merged
  ``{"approval": "yes"}`` and moved the task back to ``working``;
- it completes the task with ``{"sum": i + step1 + step2 + step3}`` (the steps as
  read back from the store), or, for every 10th task, fails it with
  ``{"error": ...}``;
- every 25th task is cancelled by the client right after its approval, racing the
  worker's completion: exactly one of the two wins, and the demo counts both.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import queue
import random
import secrets
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .._async._memory import InMemoryBackend
from .._async._store import GenericTaskStore
from .._core.config import SecurityConfig, StoreConfig
from .._core.errors import InvalidTransition, NotReady, TaskStoreError
from .._core.model import JSONValue, TaskRecord
from .._core.status import TaskStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

TTL_MS = 3_600_000
"""Demo tasks live an hour, so they can be inspected afterwards; then they expire."""
POLL_SCALE = 0.04
"""Poll at this fraction of the task's ``pollInterval`` (500 ms becomes 20 ms)."""
STEPS = 3
FAIL_EVERY = 10
"""Task ``i`` fails on purpose when ``i % FAIL_EVERY == FAIL_EVERY - 1``."""
CANCEL_EVERY = 25
"""Task ``i`` is cancelled by the client when ``i % CANCEL_EVERY == 0``."""
CLIENT_CONCURRENCY = 32
CREATE_CONCURRENCY = 32
LIST_LIMIT = 1000
REQUEST_METHOD = "tools/call"
DONE_MESSAGE = "done"
FAILED_MESSAGE = "failed on purpose"
WAIT_MESSAGE = "waiting for approval"
APPROVED_MESSAGE = "approved by the client"
WORKER_GRACE_S = 2.0
"""How long a worker that exited may take to deliver its report through the queue."""
MAX_ERRORS_KEPT = 20

CONFIG = StoreConfig(default_ttl_ms=TTL_MS)
SECURITY = SecurityConfig(max_tasks_per_owner=None)

Job = tuple[int, str, str]
"""(task index, task id, owner id): all a worker needs to know about a task."""


# --- the plan: what each task must end up as ---------------------------------------------


def step_value(seed: int, index: int, step: int) -> int:
    """Return the value a worker merges as ``step<step>`` of task ``index``."""
    return (seed * 1_000_003 + index * 7_919 + step * 104_729) % 10_007


def expected_sum(seed: int, index: int) -> int:
    """Return the ``sum`` a worker must report for task ``index``."""
    return index + sum(step_value(seed, index, step) for step in range(1, STEPS + 1))


def planned_status(index: int) -> TaskStatus:
    """Return the terminal status a worker aims for (a cancel may still win)."""
    return TaskStatus.FAILED if index % FAIL_EVERY == FAIL_EVERY - 1 else TaskStatus.COMPLETED


def is_cancel_planned(index: int) -> bool:
    """Tell whether the client cancels task ``index`` while it is working."""
    return index % CANCEL_EVERY == 0


def result_for(status: TaskStatus, index: int, total: int) -> JSONValue:
    """Return the result a worker attaches when it moves task ``index`` to ``status``."""
    if status is TaskStatus.FAILED:
        return {"error": f"task {index} failed on purpose (sum {total})"}
    return {"sum": total}


# --- command line ---------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to its subcommand parser."""
    parser.add_argument("--workers", type=_positive, default=4, help="worker processes (4)")
    parser.add_argument("--tasks", type=_positive, default=2000, help="tasks to run (2000)")
    parser.add_argument("--owners", type=_positive, default=8, help="owners to spread over (8)")
    parser.add_argument(
        "--concurrency", type=_positive, default=16, help="coroutines per worker (16)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the step values and cancel timing"
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=120.0,
        help="give up (and fail) after this many seconds of work (120)",
    )


# --- workers --------------------------------------------------------------------------------


@dataclass
class WorkerReport:
    """What one worker did, sent back to the parent (picklable)."""

    wid: int
    ops: int = 0
    merged: dict[int, dict[str, JSONValue]] = field(default_factory=dict)
    """Per task index: the variables whose merge the store acknowledged."""
    outcomes: dict[int, str] = field(default_factory=dict)
    """Per task index: ``completed`` or ``failed`` (the worker's completion was
    written), ``cancel-seen`` (the worker found the task cancelled while it
    waited) or ``cancel-won`` (the worker's completion got InvalidTransition
    because the cancel came first)."""
    error_count: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        """Count an unexpected error; keep the first few messages."""
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"worker {self.wid}: {message}")


class _DeadlinePassed(Exception):
    pass


async def _await_approval(
    store: GenericTaskStore, job: Job, deadline: float, report: WorkerReport
) -> TaskRecord:
    """Poll the task until it is back in ``working`` with an approval, or terminal."""
    index, task_id, owner = job
    while True:
        record = await store.get(task_id, owner)
        report.ops += 1
        status = record.task.status
        if status is TaskStatus.WORKING and record.variables.get("approval") == "yes":
            return record
        if status.is_terminal:
            return record
        if time.time() >= deadline:
            raise _DeadlinePassed(f"task {index}: still {status.value} at the deadline")
        await anyio.sleep(record.task.poll_interval / 1000 * POLL_SCALE)


async def _work_on(
    store: GenericTaskStore, wid: int, job: Job, seed: int, deadline: float, report: WorkerReport
) -> None:
    index, task_id, owner = job
    merged = report.merged.setdefault(index, {})
    updates: list[dict[str, JSONValue]] = [{"worker": wid}]
    updates += [{f"step{s}": step_value(seed, index, s)} for s in range(1, STEPS + 1)]
    record: TaskRecord | None = None
    for variables in updates:
        record = await store.set_variables(task_id, owner, variables)
        report.ops += 1
        merged.update(variables)
    assert record is not None
    total = index + sum(int(record.variables[f"step{s}"]) for s in range(1, STEPS + 1))
    await store.update_status(task_id, owner, TaskStatus.INPUT_REQUIRED, WAIT_MESSAGE)
    report.ops += 1
    record = await _await_approval(store, job, deadline, report)
    if record.task.status is TaskStatus.CANCELLED and is_cancel_planned(index):
        report.outcomes[index] = "cancel-seen"
        return
    if record.task.status.is_terminal:
        report.error(f"task {index}: unexpectedly {record.task.status.value} while waiting")
        return
    status = planned_status(index)
    message = DONE_MESSAGE if status is TaskStatus.COMPLETED else FAILED_MESSAGE
    try:
        await store.complete_with_result(
            task_id, owner, status, message, result_for(status, index, total)
        )
    except InvalidTransition as exc:
        report.ops += 1
        if is_cancel_planned(index) and exc.from_status == TaskStatus.CANCELLED.value:
            report.outcomes[index] = "cancel-won"
            return
        raise
    report.ops += 1
    report.outcomes[index] = status.value


async def run_worker(
    store: GenericTaskStore,
    wid: int,
    jobs: Sequence[Job],
    concurrency: int,
    seed: int,
    deadline: float,
) -> WorkerReport:
    """Take ``jobs`` through their life cycle with ``concurrency`` coroutines; report."""
    report = WorkerReport(wid)
    todo = iter(jobs)

    async def lane() -> None:
        for job in todo:
            if time.time() >= deadline:
                report.error(f"deadline passed with task {job[0]} and others not started")
                return
            try:
                await _work_on(store, wid, job, seed, deadline, report)
            except (TaskStoreError, _DeadlinePassed) as exc:
                report.error(f"task {job[0]}: {type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, len(jobs))):
            group.start_soon(lane)
    return report


async def _worker_on_redis(
    wid: int, url: str, prefix: str, jobs: list[Job], concurrency: int, seed: int, deadline: float
) -> WorkerReport:
    async with GenericTaskStore.from_url(
        url, config=CONFIG, security=SECURITY, prefix=prefix
    ) as store:
        return await run_worker(store, wid, jobs, concurrency, seed, deadline)


def _worker_process(
    wid: int,
    url: str,
    prefix: str,
    jobs: list[Job],
    concurrency: int,
    seed: int,
    deadline: float,
    results: Queue[tuple[str, int, Any]],
) -> None:
    """Entry point of a worker process: run, then send the report (or the crash)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    try:
        report = anyio.run(_worker_on_redis, wid, url, prefix, jobs, concurrency, seed, deadline)
    except BaseException:
        results.put(("crashed", wid, traceback.format_exc()))
        raise SystemExit(1) from None
    results.put(("done", wid, report))


# --- the client, in the parent --------------------------------------------------------------


@dataclass
class _ClientTask:
    index: int
    task_id: str
    owner: str
    approved: bool = False
    cancel: str | None = None
    """``cancelled`` if the client's cancel was written, ``too-late`` if it got
    InvalidTransition, None if not attempted."""
    status: TaskStatus | None = None
    """The terminal status the client saw, None until then."""
    result: JSONValue = None
    result_not_ready: bool = False


@dataclass
class _Tally:
    create_ops: int = 0
    client_ops: int = 0
    client_error_count: int = 0
    client_errors: list[str] = field(default_factory=list)

    def client_error(self, message: str) -> None:
        self.client_error_count += 1
        if len(self.client_errors) < MAX_ERRORS_KEPT:
            self.client_errors.append(f"client: {message}")


@dataclass
class _Health:
    finished: bool
    failure: str | None = None


class _Bars:
    """The three progress bars (rich), or nothing when the console is not a terminal."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.created = progress.add_task("tasks created", total=total)
        self.answered = progress.add_task("input answered", total=total)
        self.terminal = progress.add_task("terminal", total=total)

    def advance(self, bar: TaskID) -> None:
        self.progress.advance(bar)


class _Demo:
    """One run of the demo: state shared by the phases."""

    def __init__(self, args: argparse.Namespace, url: str | None, console: Console) -> None:
        self.url = url
        self.console = console
        self.workers: int = args.workers
        self.tasks: int = args.tasks
        self.owners: int = args.owners
        self.concurrency: int = args.concurrency
        self.timeout: float = args.timeout
        self.seed: int = args.seed if args.seed is not None else secrets.randbelow(2**31)
        self.rng = random.Random(self.seed)
        base = str(args.prefix)[:50]
        self.prefix = f"{base}-demo-{secrets.token_hex(4)}"
        self.memory = InMemoryBackend() if url is None else None
        self.tally = _Tally()
        self.jobs: list[Job] = []
        self.client: list[_ClientTask] = []
        self.reports: dict[int, WorkerReport] = {}
        self.procs: list[SpawnProcess] = []
        self.results: Queue[tuple[str, int, Any]] | None = None
        self.exited_at: dict[int, float] = {}
        self.failure: str | None = None
        self.create_s = 0.0
        self.work_s = 0.0
        self.verify_s = 0.0
        self.checks: list[tuple[str, bool, str]] = []
        self.counts: Counter[str] = Counter()

    # -- stores

    def store(self) -> GenericTaskStore:
        """A new store on the demo's storage (a fresh instance: no remembered records)."""
        if self.memory is not None:
            return GenericTaskStore(self.memory, CONFIG, SECURITY)
        assert self.url is not None
        return GenericTaskStore.from_url(
            self.url, config=CONFIG, security=SECURITY, prefix=self.prefix
        )

    def owner(self, index: int) -> str:
        """The owner of task ``index``."""
        return f"demo-owner-{index % self.owners}"

    # -- phases

    async def main(self, bars: _Bars) -> None:
        """Create, work, verify."""
        start = time.perf_counter()
        deadline = time.time() + self.timeout
        async with self.store() as store:
            await self.create_all(store, bars, deadline)
            self.create_s = time.perf_counter() - start
            if self.failure is None:
                start = time.perf_counter()
                await self.work(store, bars, deadline)
                self.work_s = time.perf_counter() - start
        if self.failure is None:
            start = time.perf_counter()
            async with self.store() as fresh:
                await self.verify(fresh, time.time() + self.timeout)
            self.verify_s = time.perf_counter() - start

    async def create_all(self, store: GenericTaskStore, bars: _Bars, deadline: float) -> None:
        """Create the tasks, ``CREATE_CONCURRENCY`` at a time."""
        created: dict[int, str] = {}
        indexes = iter(range(self.tasks))

        async def lane() -> None:
            for index in indexes:
                if time.time() >= deadline:
                    self.failure = "the deadline passed while creating the tasks"
                    return
                record = await store.create(self.owner(index), REQUEST_METHOD, ttl_ms=TTL_MS)
                self.tally.create_ops += 1
                created[index] = record.task.task_id
                bars.advance(bars.created)

        async with anyio.create_task_group() as group:
            for _ in range(min(CREATE_CONCURRENCY, self.tasks)):
                group.start_soon(lane)
        self.jobs = [(i, created[i], self.owner(i)) for i in range(self.tasks) if i in created]
        self.client = [_ClientTask(*job) for job in self.jobs]

    async def work(self, store: GenericTaskStore, bars: _Bars, deadline: float) -> None:
        """Run the workers and the client until every task is terminal (or a failure)."""
        shares = [self.jobs[wid :: self.workers] for wid in range(self.workers)]
        if self.memory is None:
            self.start_processes(shares, deadline)
            await self.play_client(store, bars, deadline, self.poll_processes)
            if self.failure is None:
                await self.collect_reports(deadline)
            return
        async with anyio.create_task_group() as group:
            for wid, share in enumerate(shares):
                group.start_soon(self.run_coroutine_worker, store, wid, share, deadline)
            await self.play_client(store, bars, deadline, self.poll_coroutines)
            if self.failure is not None:
                group.cancel_scope.cancel()  # stop the workers still waiting

    async def run_coroutine_worker(
        self, store: GenericTaskStore, wid: int, share: list[Job], deadline: float
    ) -> None:
        """A worker as a group of coroutines in this process (in-memory backend)."""
        try:
            self.reports[wid] = await run_worker(
                store, wid, share, self.concurrency, self.seed, deadline
            )
        except Exception:
            self.failure = f"worker {wid} crashed:\n{traceback.format_exc()}"

    def poll_coroutines(self) -> _Health:
        """Whether every coroutine worker has reported."""
        return _Health(len(self.reports) == self.workers, self.failure)

    def start_processes(self, shares: list[list[Job]], deadline: float) -> None:
        """Start one worker process per share (spawn: nothing inherited but the arguments)."""
        assert self.url is not None
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        for wid, share in enumerate(shares):
            proc = context.Process(
                target=_worker_process,
                args=(
                    wid,
                    self.url,
                    self.prefix,
                    share,
                    self.concurrency,
                    self.seed,
                    deadline,
                    self.results,
                ),
                name=f"taskstore-demo-worker-{wid}",
                daemon=True,
            )
            proc.start()
            self.procs.append(proc)

    def poll_processes(self) -> _Health:
        """Collect the reports that arrived; notice a worker that died without one."""
        assert self.results is not None
        while True:
            try:
                kind, wid, payload = self.results.get_nowait()
            except queue.Empty:
                break
            if kind == "done":
                self.reports[wid] = payload
            else:
                return _Health(False, f"worker process {wid} crashed:\n{payload}")
        now = time.monotonic()
        for wid, proc in enumerate(self.procs):
            if wid in self.reports or proc.exitcode is None:
                continue
            if now - self.exited_at.setdefault(wid, now) > WORKER_GRACE_S:
                code = proc.exitcode
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return _Health(
                    False,
                    f"worker process {wid} (pid {proc.pid}) {how} without reporting: "
                    f"its {len(self.jobs[wid :: self.workers])} tasks cannot finish",
                )
        return _Health(len(self.reports) == self.workers)

    async def collect_reports(self, deadline: float) -> None:
        """Wait (bounded) for every worker's report, then for the processes to exit."""
        while True:
            health = self.poll_processes()
            if health.failure is not None:
                self.failure = health.failure
                return
            if health.finished:
                break
            if time.time() >= deadline:
                missing = sorted(set(range(self.workers)) - set(self.reports))
                self.failure = f"workers {missing} did not report before the deadline"
                return
            await anyio.sleep(0.02)
        for proc in self.procs:
            await anyio.to_thread.run_sync(proc.join, WORKER_GRACE_S)

    async def play_client(
        self,
        store: GenericTaskStore,
        bars: _Bars,
        deadline: float,
        health_check: Callable[[], _Health],
    ) -> None:
        """Poll every unfinished task with ``get``: answer, cancel, collect results."""
        poll_s = CONFIG.poll_interval_ms / 1000 * POLL_SCALE
        pending = list(self.client)
        rounds_after_workers = 0
        while pending:
            started = time.monotonic()
            todo: Iterator[_ClientTask] = iter(pending)

            async def lane(todo: Iterator[_ClientTask] = todo) -> None:
                for task in todo:
                    try:
                        await self.visit(store, task, bars, poll_s)
                    except TaskStoreError as exc:
                        self.tally.client_error(f"task {task.index}: {type(exc).__name__}: {exc}")

            async with anyio.create_task_group() as group:
                for _ in range(min(CLIENT_CONCURRENCY, len(pending))):
                    group.start_soon(lane)
            pending = [task for task in pending if task.status is None]
            health = health_check()
            if health.failure is not None:
                self.failure = health.failure
                return
            if health.finished and pending:
                rounds_after_workers += 1
                if rounds_after_workers > 2:
                    self.failure = (
                        f"{len(pending)} task(s) never reached a terminal state after every "
                        f"worker finished (first: task {pending[0].index})"
                    )
                    return
            if pending and time.time() >= deadline:
                self.failure = (
                    f"the deadline ({self.timeout:g} s) passed with {len(pending)} task(s) "
                    "not terminal"
                )
                return
            await anyio.sleep(max(0.0, poll_s - (time.monotonic() - started)))

    async def visit(
        self, store: GenericTaskStore, task: _ClientTask, bars: _Bars, poll_s: float
    ) -> None:
        """One poll of one task by the client."""
        record = await store.get(task.task_id, task.owner)
        self.tally.client_ops += 1
        status = record.task.status
        if status is TaskStatus.INPUT_REQUIRED and not task.approved:
            await store.set_variables(task.task_id, task.owner, {"approval": "yes"})
            self.tally.client_ops += 1
            await store.update_status(
                task.task_id, task.owner, TaskStatus.WORKING, APPROVED_MESSAGE
            )
            self.tally.client_ops += 1
            task.approved = True
            bars.advance(bars.answered)
            if is_cancel_planned(task.index):
                await anyio.sleep(self.rng.uniform(0.0, poll_s))  # race the worker
                try:
                    await store.cancel(task.task_id, task.owner)
                    task.cancel = "cancelled"
                except InvalidTransition:
                    task.cancel = "too-late"
                self.tally.client_ops += 1
            return
        if status.is_terminal:
            try:
                task.result = await store.get_result(task.task_id, task.owner)
            except NotReady:
                task.result_not_ready = True
            self.tally.client_ops += 1
            task.status = status
            bars.advance(bars.terminal)

    # -- verification

    async def list_everything(
        self, store: GenericTaskStore, deadline: float
    ) -> tuple[list[TaskRecord], str]:
        """Every owner's tasks through all pages; and a problem with the paging, if any."""
        records: list[TaskRecord] = []
        max_pages = self.tasks // LIST_LIMIT + 2
        for number in range(self.owners):
            owner = f"demo-owner-{number}"
            cursor: str | None = None
            for _ in range(max_pages):
                page = await store.list(owner, cursor=cursor, limit=LIST_LIMIT)
                records.extend(page.tasks)
                cursor = page.next_cursor
                if cursor is None:
                    break
                if time.time() >= deadline:
                    return records, f"the deadline passed while listing {owner}"
            else:
                return records, f"listing {owner} did not end after {max_pages} pages"
        return records, ""

    async def verify(self, store: GenericTaskStore, deadline: float) -> None:
        """Check every task as listed by a fresh store against the plan and the reports."""
        records, paging_problem = await self.list_everything(store, deadline)
        check = _Checker()
        by_id: dict[str, TaskRecord] = {}
        for record in records:
            if record.task.task_id in by_id:
                check.fail("listing", f"task {record.task.task_id} listed twice")
            by_id[record.task.task_id] = record
        if paging_problem:
            check.fail("listing", paging_problem)
        if len(records) != self.tasks:
            check.fail("listing", f"{len(records)} tasks listed, {self.tasks} created")
        known = {job[1] for job in self.jobs}
        for task_id in by_id.keys() - known:
            check.fail("listing", f"task {task_id} listed but never created by this run")

        worker_outcomes: dict[int, str] = {}
        merged: dict[int, dict[str, JSONValue]] = {}
        for report in self.reports.values():
            worker_outcomes.update(report.outcomes)
            for index, variables in report.merged.items():
                merged.setdefault(index, {}).update(variables)
            for message in report.errors:
                check.fail("no errors", message)
            if report.error_count > len(report.errors):
                more = report.error_count - len(report.errors)
                check.fail("no errors", f"worker {report.wid}: {more} more")
        for message in self.tally.client_errors:
            check.fail("no errors", message)

        for task in self.client:
            stored = by_id.get(task.task_id)
            if stored is None:
                check.fail("listing", f"task {task.index} ({task.task_id}) missing")
                continue
            self.check_task(check, task, stored, worker_outcomes.get(task.index), merged)
        self.checks = check.results(
            ["listing", "terminal", "outcome", "result", "cancel race", "variables", "no errors"]
        )

    def check_task(
        self,
        check: _Checker,
        task: _ClientTask,
        record: TaskRecord,
        outcome: str | None,
        merged: dict[int, dict[str, JSONValue]],
    ) -> None:
        """Check one task's stored state against the plan and what both sides saw."""
        index, status = task.index, record.task.status
        self.counts[status.value] += 1
        if not status.is_terminal:
            check.fail("terminal", f"task {index} is still {status.value}")
            return
        if task.status is not status:
            seen = task.status.value if task.status else "nothing terminal"
            check.fail("terminal", f"task {index} is {status.value}, the client saw {seen}")
        if is_cancel_planned(index):
            self.counts["cancel attempts"] += 1
            cancelled_by_client = task.cancel == "cancelled"
            worker_completed = outcome == TaskStatus.COMPLETED.value
            self.counts["cancels won" if cancelled_by_client else "completions won"] += 1
            if cancelled_by_client == worker_completed:
                check.fail(
                    "cancel race",
                    f"task {index}: client cancel {task.cancel}, worker {outcome}: "
                    "not exactly one winner",
                )
            want = TaskStatus.CANCELLED if cancelled_by_client else TaskStatus.COMPLETED
            if not worker_completed and outcome not in ("cancel-seen", "cancel-won"):
                check.fail("cancel race", f"task {index}: worker outcome {outcome}")
        else:
            want = planned_status(index)
            if outcome != want.value:
                check.fail("outcome", f"task {index}: worker reported {outcome}")
        if status is not want:
            check.fail("outcome", f"task {index} is {status.value}, expected {want.value}")
        self.check_result(check, task, record, want)
        expected_vars = dict(merged.get(index, {}))
        if task.approved:
            expected_vars["approval"] = "yes"
        for key, value in expected_vars.items():
            if record.variables.get(key) != value:
                got = record.variables.get(key, "nothing")
                check.fail("variables", f"task {index}: {key} = {got!r}, merged {value!r}")
        if len(merged.get(index, {})) < STEPS + 1 or not task.approved:
            check.fail("variables", f"task {index}: not every merge was acknowledged")

    def check_result(
        self, check: _Checker, task: _ClientTask, record: TaskRecord, want: TaskStatus
    ) -> None:
        """Check the stored result and the one the client got from ``get_result``."""
        index, status = task.index, record.task.status
        if status is TaskStatus.CANCELLED:
            if record.result is not None or not task.result_not_ready:
                check.fail("result", f"cancelled task {index} has a result: {record.result!r}")
            if record.task.status_message is not None:
                check.fail(
                    "result", f"cancelled task {index}: message {record.task.status_message}"
                )
            return
        expected = result_for(status, index, expected_sum(self.seed, index))
        if record.result != expected:
            check.fail("result", f"task {index}: result {record.result!r}, expected {expected!r}")
        if task.result != expected:
            check.fail("result", f"task {index}: the client got {task.result!r}")
        message = DONE_MESSAGE if status is TaskStatus.COMPLETED else FAILED_MESSAGE
        if record.task.status_message != message:
            check.fail("result", f"task {index}: message {record.task.status_message!r}")

    # -- the end

    def stop_processes(self) -> None:
        """Terminate the worker processes still running (after a failure or Ctrl-C)."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(WORKER_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join(WORKER_GRACE_S)
        if self.results is not None:
            self.results.close()
            self.results.cancel_join_thread()

    def summary(self) -> Table:
        """The rich table printed at the end."""
        worker_ops = sum(report.ops for report in self.reports.values())
        ops = self.tally.create_ops + worker_ops + self.tally.client_ops
        busy = self.create_s + self.work_s
        where = (
            "in-memory backend, one process"
            if self.url is None
            else f"{escape(self.url)}, key prefix {self.prefix}"
        )
        table = Table(title="taskstore-redis demo", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("store", where)
        table.add_row(
            "tasks",
            f"{self.tasks} over {self.owners} owners; {self.workers} workers x "
            f"{self.concurrency} coroutines; seed {self.seed}",
        )
        if self.checks:
            counts = self.counts
            table.add_row(
                "terminal",
                f"completed {counts['completed']}, failed {counts['failed']}, "
                f"cancelled {counts['cancelled']} (as stored)",
            )
            table.add_row(
                "cancel races",
                f"{counts['cancel attempts']} cancels: {counts['cancels won']} won, "
                f"{counts['completions won']} lost to the worker's completion",
            )
        else:
            seen = Counter(task.status.value for task in self.client if task.status is not None)
            table.add_row(
                "terminal",
                f"{sum(seen.values())} of {self.tasks} seen by the client (completed "
                f"{seen['completed']}, failed {seen['failed']}, cancelled {seen['cancelled']})",
            )
        missing = self.workers - len(self.reports)
        unreported = f", {missing} worker(s) never reported" if missing else ""
        table.add_row(
            "operations",
            f"{ops} (create {self.tally.create_ops}, workers {worker_ops}, "
            f"client {self.tally.client_ops}{unreported})",
        )
        table.add_row("ops/s", f"{ops / busy:,.0f}" if busy > 0 else "-")
        table.add_row(
            "elapsed",
            f"{busy + self.verify_s:.2f} s (create {self.create_s:.2f} s, "
            f"work {self.work_s:.2f} s, verify {self.verify_s:.2f} s)",
        )
        if self.failure is not None:
            table.add_row("verification", "[red]not run: the run failed[/red]")
        else:
            passed = all(ok for _, ok, _ in self.checks)
            verdict = "[green]passed[/green]" if passed else "[red]FAILED[/red]"
            names = ", ".join(name if ok else f"[red]{name}[/red]" for name, ok, _ in self.checks)
            table.add_row("verification", f"{verdict} ({names})")
        return table

    def error_lines(self) -> list[str]:
        """The unexpected errors the workers and the client reported, first ones first."""
        lines = [line for wid in sorted(self.reports) for line in self.reports[wid].errors]
        return lines + self.tally.client_errors

    def passed(self) -> bool:
        """Whether the run finished and every check passed."""
        return self.failure is None and bool(self.checks) and all(ok for _, ok, _ in self.checks)


class _Checker:
    """Collects failed checks by name, keeping the first few details of each."""

    def __init__(self) -> None:
        self.failures: dict[str, list[str]] = {}
        self.failure_counts: Counter[str] = Counter()

    def fail(self, name: str, detail: str) -> None:
        self.failure_counts[name] += 1
        details = self.failures.setdefault(name, [])
        if len(details) < 5:
            details.append(detail)

    def results(self, names: list[str]) -> list[tuple[str, bool, str]]:
        out = []
        for name in names:
            count = self.failure_counts[name]
            detail = "; ".join(self.failures.get(name, []))
            if count > len(self.failures.get(name, [])):
                detail += f"; and {count - len(self.failures[name])} more"
            out.append((name, count == 0, detail))
        return out


def _describe(exc: BaseException) -> list[str]:
    """The leaf errors of an exception (group), as ``Type: message``."""
    if isinstance(exc, BaseExceptionGroup):
        return [line for inner in exc.exceptions for line in _describe(inner)]
    return [f"{type(exc).__name__}: {exc}"]


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Run the demo on ``url`` (None: the in-memory backend); return the exit status."""
    demo = _Demo(args, url, console)
    mode = (
        "in-memory backend, worker coroutine groups in this process"
        if url is None
        else f"{demo.workers} worker processes"
    )
    where = "" if url is None else f", key prefix [bold]{demo.prefix}[/bold]"
    console.print(
        f"demo: {demo.tasks} tasks, {demo.owners} owners, {mode}{where}, seed {demo.seed}",
        soft_wrap=True,
    )
    progress = Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    try:
        with progress:
            anyio.run(demo.main, _Bars(progress, demo.tasks))
    except KeyboardInterrupt:
        demo.stop_processes()
        console.print("[yellow]interrupted: workers stopped, stores closed[/yellow]")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a store error escaping a task group arrives as a group
        demo.failure = "; ".join(_describe(exc))
    finally:
        demo.stop_processes()
    console.print(demo.summary())
    if demo.failure is not None:
        console.print(f"[red]demo failed: {escape(demo.failure)}[/red]", soft_wrap=True)
        for line in demo.error_lines()[:MAX_ERRORS_KEPT]:
            console.print(f"  {escape(line)}", soft_wrap=True)
        return EXIT_FAILED
    for name, ok, detail in demo.checks:
        if not ok:
            console.print(f"[red]check {name!r} failed: {escape(detail)}[/red]", soft_wrap=True)
    if url is not None and args.redis_url:
        owner = demo.owner(0)
        console.print(
            f"inspect: taskstore-redis list --redis-url {escape(url)} --prefix {demo.prefix} "
            f"--owner {owner}   (the tasks expire in {TTL_MS // 60_000} minutes)",
            soft_wrap=True,
        )
    elif url is not None:
        console.print(
            f"the tasks were under key prefix {demo.prefix}; the throwaway Redis stops now",
            soft_wrap=True,
        )
    return EXIT_OK if demo.passed() else EXIT_FAILED
