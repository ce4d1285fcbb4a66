"""The demo's workers: each takes its share of the tasks through the plan.

With Redis, every worker is a spawned process with a store of its own
(:class:`WorkerProcesses`); with the in-memory backend, a group of coroutines in
this process sharing the one store (:class:`CoroutineWorkers`). Either way a
worker sends back a :class:`WorkerReport` of what the store acknowledged.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from typing import Any

import anyio

from ..._async._store import GenericTaskStore
from ..._core.errors import InvalidTransition, TaskStoreError, WaitTimeout
from ..._core.model import JSONValue, TaskRecord
from ..._core.status import TaskStatus
from .plan import (
    CONFIG,
    MAX_ERRORS_KEPT,
    SECURITY,
    STEPS,
    WAIT_MESSAGE,
    Job,
    is_cancel_planned,
    message_for,
    planned_status,
    result_for,
    step_value,
)

WORKER_GRACE_S = 2.0
"""How long a worker that exited may take to deliver its report through the queue."""


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


@dataclass
class Health:
    """Whether every worker has reported, and what went wrong if anything did."""

    finished: bool
    failure: str | None = None


class _DeadlinePassed(Exception):
    pass


async def _await_approval(
    store: GenericTaskStore, job: Job, version: int, deadline: float, report: WorkerReport
) -> TaskRecord:
    """Wait until the task is back in ``working`` with an approval, or terminal.

    ``version`` is the one the worker wrote with ``input_required``; each wait
    returns at the next change after the last version seen, without polling.
    """
    index, task_id, owner = job
    status = TaskStatus.INPUT_REQUIRED
    while True:
        left = deadline - time.time()
        record = None
        if left > 0:
            with contextlib.suppress(WaitTimeout):
                record = await store.wait(task_id, owner, after_version=version, timeout=left)
        if record is None:
            raise _DeadlinePassed(f"task {index}: still {status.value} at the deadline")
        report.ops += 1
        status = record.task.status
        if status is TaskStatus.WORKING and record.variables.get("approval") == "yes":
            return record
        if status.is_terminal:
            return record
        version = record.version


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
    record = await store.update_status(task_id, owner, TaskStatus.INPUT_REQUIRED, WAIT_MESSAGE)
    report.ops += 1
    record = await _await_approval(store, job, record.version, deadline, report)
    if record.task.status is TaskStatus.CANCELLED and is_cancel_planned(index):
        report.outcomes[index] = "cancel-seen"
        return
    if record.task.status.is_terminal:
        report.error(f"task {index}: unexpectedly {record.task.status.value} while waiting")
        return
    status = planned_status(index)
    try:
        await store.complete_with_result(
            task_id, owner, status, message_for(status), result_for(status, index, total)
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


class CoroutineWorkers:
    """Workers as groups of coroutines in this process (the in-memory backend)."""

    def __init__(self, count: int, concurrency: int, seed: int) -> None:
        """Prepare ``count`` workers of ``concurrency`` coroutines each."""
        self.count = count
        self.concurrency = concurrency
        self.seed = seed
        self.reports: dict[int, WorkerReport] = {}
        self.failure: str | None = None

    async def run(
        self, store: GenericTaskStore, wid: int, share: list[Job], deadline: float
    ) -> None:
        """Run worker ``wid`` on its share; a crash becomes the run's failure."""
        try:
            self.reports[wid] = await run_worker(
                store, wid, share, self.concurrency, self.seed, deadline
            )
        except Exception:
            self.failure = f"worker {wid} crashed:\n{traceback.format_exc()}"

    def poll(self) -> Health:
        """Whether every coroutine worker has reported."""
        return Health(len(self.reports) == self.count, self.failure)


class WorkerProcesses:
    """One spawned process per worker, each with a store of its own on Redis."""

    def __init__(self, url: str, prefix: str, concurrency: int, seed: int) -> None:
        """Prepare workers on ``url`` under key prefix ``prefix``."""
        self.url = url
        self.prefix = prefix
        self.concurrency = concurrency
        self.seed = seed
        self.reports: dict[int, WorkerReport] = {}
        self.procs: list[SpawnProcess] = []
        self.shares: list[list[Job]] = []
        self.results: Queue[tuple[str, int, Any]] | None = None
        self.exited_at: dict[int, float] = {}

    def start(self, shares: list[list[Job]], deadline: float) -> None:
        """Start one worker process per share (spawn: nothing inherited but the arguments)."""
        context = multiprocessing.get_context("spawn")
        self.shares = shares
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

    def poll(self) -> Health:
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
                return Health(False, f"worker process {wid} crashed:\n{payload}")
        now = time.monotonic()
        for wid, proc in enumerate(self.procs):
            if wid in self.reports or proc.exitcode is None:
                continue
            if now - self.exited_at.setdefault(wid, now) > WORKER_GRACE_S:
                code = proc.exitcode
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return Health(
                    False,
                    f"worker process {wid} (pid {proc.pid}) {how} without reporting: "
                    f"its {len(self.shares[wid])} tasks cannot finish",
                )
        return Health(len(self.reports) == len(self.procs))

    async def collect(self, deadline: float) -> str | None:
        """Wait (bounded) for every worker's report, then for the processes to exit.

        Returns what went wrong, or None.
        """
        while True:
            health = self.poll()
            if health.failure is not None:
                return health.failure
            if health.finished:
                break
            if time.time() >= deadline:
                missing = sorted(set(range(len(self.procs))) - set(self.reports))
                return f"workers {missing} did not report before the deadline"
            await anyio.sleep(0.02)
        for proc in self.procs:
            await anyio.to_thread.run_sync(proc.join, WORKER_GRACE_S)
        return None

    def stop(self) -> None:
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
