"""The demo's workers: each claims tasks from the demo's queue and takes them through the plan.

With Redis, every worker is a spawned process with a store of its own
(:class:`WorkerProcesses`); with the in-memory backend, a group of coroutines in
this process sharing the one store (:class:`CoroutineWorkers`). Either way a
worker claims with a fenced lease (``claim_many``), renews what it holds
(``renew_leases``) and writes through the lease, so a task whose worker is lost
is taken over by another once its lease runs out, and the lost worker can no
longer write to it. A worker sends back a :class:`WorkerReport` of what the
store acknowledged.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import SimpleQueue
from multiprocessing.synchronize import Event
from typing import Any

import anyio

from ..._async._lease import Lease
from ..._async._store import GenericTaskStore
from ..._core.errors import InvalidArgument, LeaseLost, TaskStoreError, WaitTimeout
from ..._core.model import JSONValue, TaskRecord
from ..._core.status import TaskStatus
from .plan import (
    CONFIG,
    MAX_ERRORS_KEPT,
    QUEUE,
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
STOP_CHECK_S = 0.25
"""The longest a worker waits for work or a free slot before it looks at its stop flag."""


@dataclass
class WorkerReport:
    """What one worker did, sent back to the parent (picklable)."""

    wid: int
    ops: int = 0
    claims: dict[int, int] = field(default_factory=dict)
    """Per task index: the attempt of this worker's latest claim of it."""
    merged: dict[int, dict[str, JSONValue]] = field(default_factory=dict)
    """Per task index: the variables whose merge the store acknowledged."""
    outcomes: dict[int, str] = field(default_factory=dict)
    """Per task index: ``completed`` or ``failed`` (the worker's completion was
    written), ``cancel-seen`` (the worker found the task cancelled before its
    completion), ``cancel-won`` (the worker's completion found the task cancelled:
    the cancel came first) or ``superseded`` (the lease ran out and another worker
    took the task over: this worker wrote nothing more)."""
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    emit: Callable[[str, int, Any], None] | None = field(default=None, repr=False)
    """Sends each claim and outcome to the parent as it happens (worker processes),
    so what a worker did before it was killed is still known: a ``SimpleQueue``,
    whose ``put`` writes to the pipe before it returns (no feeder thread whose
    backlog a SIGKILL would lose)."""

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without ``emit``."""
        return {**self.__dict__, "emit": None}

    def claimed(self, index: int, attempt: int) -> None:
        """Note a claim of task ``index``."""
        self.claims[index] = attempt
        if self.emit is not None:
            self.emit("claimed", self.wid, (index, attempt))

    def ended(self, index: int, outcome: str) -> None:
        """Note how this worker's attempt at task ``index`` ended."""
        self.outcomes[index] = outcome
        if self.emit is not None:
            self.emit("ended", self.wid, (index, outcome, self.merged.get(index, {})))

    def holds_unfinished(self) -> bool:
        """Whether a task this worker claimed has no outcome yet."""
        return any(index not in self.outcomes for index in self.claims)

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


def worker_name(wid: int) -> str:
    """The ``worker_id`` worker ``wid`` claims with (shown in each task's job state)."""
    return f"demo-worker-{wid}"


async def _await_approval(
    store: GenericTaskStore, job: Job, record: TaskRecord, deadline: float, report: WorkerReport
) -> TaskRecord:
    """Wait until the task is back in ``working`` with an approval, or terminal.

    ``record`` is the task as the worker last wrote it; each wait returns at the
    next change after the last version seen, without polling.
    """
    index, task_id, owner = job
    while not _approved(record) and not record.task.status.is_terminal:
        left = deadline - time.time()
        changed = None
        if left > 0:
            with contextlib.suppress(WaitTimeout):
                changed = await store.wait(
                    task_id, owner_id=owner, after_version=record.version, timeout=left
                )
        if changed is None:
            status = record.task.status.value
            raise _DeadlinePassed(f"task {index}: still {status} at the deadline")
        report.ops += 1
        record = changed
    return record


def _approved(record: TaskRecord) -> bool:
    return record.task.status is TaskStatus.WORKING and record.variables.get("approval") == "yes"


async def _work_on(
    store: GenericTaskStore,
    wid: int,
    lease: Lease,
    seed: int,
    deadline: float,
    report: WorkerReport,
) -> None:
    """Take one claimed task through the plan, with the lease's fenced writes.

    A task delivered again (its earlier worker was lost) may be anywhere in the
    plan: the merges are repeated (same values), the question is asked only if it
    is not already asked or answered, so the end is the same.
    """
    index = _index_of(lease)
    job = (index, lease.task_id, lease.owner_id)
    merged = report.merged[index] = {}
    updates: list[dict[str, JSONValue]] = [{"worker": wid}]
    updates += [{f"step{s}": step_value(seed, index, s)} for s in range(1, STEPS + 1)]
    record = lease.task
    for variables in updates:
        record = await lease.set_variables(variables)
        report.ops += 1
        merged.update(variables)
    total = index + sum(int(record.variables[f"step{s}"]) for s in range(1, STEPS + 1))
    if record.task.status is TaskStatus.WORKING and not _approved(record):
        record = await lease.update_status(TaskStatus.INPUT_REQUIRED, WAIT_MESSAGE)
        report.ops += 1
    record = await _await_approval(store, job, record, deadline, report)
    if record.task.status is TaskStatus.CANCELLED and is_cancel_planned(index):
        report.ended(index, "cancel-seen")
        return
    if record.task.status.is_terminal:
        report.error(f"task {index}: unexpectedly {record.task.status.value} while waiting")
        return
    status = planned_status(index)
    try:
        await lease.complete(status, message_for(status), result_for(status, index, total))
    except LeaseLost as exc:
        report.ops += 1
        if is_cancel_planned(index) and exc.reason == "cancelled":
            report.ended(index, "cancel-won")
            return
        raise
    report.ops += 1
    report.ended(index, status.value)


def _index_of(lease: Lease) -> int:
    params = lease.params
    if not isinstance(params, dict) or not isinstance(params.get("index"), int):
        raise InvalidArgument(f"task {lease.task_id}: not a demo task (params {params!r})")
    return int(params["index"])


async def _attempt(
    store: GenericTaskStore,
    wid: int,
    lease: Lease,
    seed: int,
    deadline: float,
    report: WorkerReport,
) -> None:
    """One attempt at a claimed task; what went wrong is reported, never raised."""
    try:
        index = _index_of(lease)
    except InvalidArgument as exc:
        report.error(str(exc))
        return
    report.claimed(index, lease.attempt)
    try:
        await _work_on(store, wid, lease, seed, deadline, report)
    except LeaseLost as exc:
        if exc.reason == "cancelled" and is_cancel_planned(index):
            report.ended(index, "cancel-seen")
        elif exc.reason in ("expired", "reclaimed"):
            report.ended(index, "superseded")
        else:
            report.error(f"task {index}: {type(exc).__name__}: {exc}")
    except (TaskStoreError, _DeadlinePassed) as exc:
        report.error(f"task {index}: {type(exc).__name__}: {exc}")


class _Slots:
    """The worker's leases in hand, and a wake-up for the claim loop when one ends."""

    def __init__(self) -> None:
        self.held: dict[str, Lease] = {}
        self.freed = anyio.Event()

    def release(self, lease: Lease) -> None:
        self.held.pop(lease.task_id, None)
        self.freed.set()
        self.freed = anyio.Event()


async def run_worker(
    store: GenericTaskStore,
    wid: int,
    concurrency: int,
    seed: int,
    deadline: float,
    lease_ms: int,
    stop: Callable[[], bool],
    report: WorkerReport | None = None,
    die_after: int | None = None,
) -> WorkerReport:
    """Claim demo tasks from the queue, ``concurrency`` at a time, until ``stop()``; report.

    Free slots are filled with one ``claim_many``; every lease in hand is renewed
    in one ``renew_leases`` call each third of ``lease_ms``. Each wait for work or
    for a free slot lasts at most ``STOP_CHECK_S``, so a stop is seen that soon.
    With ``die_after`` (the victim of ``--chaos``), the process SIGKILLs itself at
    the first of those turns where it has ended that many tasks and holds a claimed
    task with no outcome yet: it dies mid-run, holding tasks, which the others take
    over once their leases run out, however late the parent would have noticed.
    (Between two awaits it holds no lock of the results queue, which the other
    workers share.)
    """
    report = report if report is not None else WorkerReport(wid)
    slots = _Slots()

    async def attempt(lease: Lease) -> None:
        try:
            await _attempt(store, wid, lease, seed, deadline, report)
        finally:
            slots.release(lease)

    async def renew() -> None:
        while True:
            await anyio.sleep(lease_ms / 3000)
            leases = list(slots.held.values())
            if not leases:
                continue
            try:
                outcomes = await store.renew_leases(leases, lease_ms)
            except TaskStoreError as exc:
                report.error(f"renew_leases: {type(exc).__name__}: {exc}")
                continue
            for lease, outcome in zip(leases, outcomes, strict=True):
                if outcome is not None and not isinstance(outcome, LeaseLost):
                    report.error(f"renew of task {lease.task_id}: {outcome}")

    async with anyio.create_task_group() as outer:
        outer.start_soon(renew)
        async with anyio.create_task_group() as handlers:
            while not stop() and time.time() < deadline:
                if (
                    die_after is not None
                    and len(report.outcomes) >= die_after
                    and report.holds_unfinished()
                ):
                    os.kill(os.getpid(), signal.SIGKILL)
                free = concurrency - len(slots.held)
                if free <= 0:
                    with anyio.move_on_after(STOP_CHECK_S):
                        await slots.freed.wait()
                    continue
                try:
                    leases = await store.claim_many(
                        QUEUE,
                        free,
                        lease_ms=lease_ms,
                        timeout=STOP_CHECK_S,
                        worker_id=worker_name(wid),
                    )
                except TaskStoreError as exc:
                    report.error(f"claim_many: {type(exc).__name__}: {exc}")
                    await anyio.sleep(STOP_CHECK_S)
                    continue
                report.ops += 1
                for lease in leases:
                    slots.held[lease.task_id] = lease
                    handlers.start_soon(attempt, lease)
        outer.cancel_scope.cancel()
    return report


@dataclass(frozen=True)
class ProcessSetup:
    """What a worker process needs to know (picklable: spawn passes it over)."""

    url: str
    prefix: str
    concurrency: int
    seed: int
    deadline: float
    lease_ms: int
    victim: int | None = None
    """The worker that kills itself (``--chaos``), if any."""
    die_after: int = 0
    """How many tasks the victim ends before it kills itself holding others."""


async def _worker_on_redis(
    wid: int, setup: ProcessSetup, stop: Event, results: SimpleQueue[tuple[str, int, Any]]
) -> WorkerReport:
    report = WorkerReport(wid, emit=lambda kind, w, payload: results.put((kind, w, payload)))
    async with GenericTaskStore.from_url(
        setup.url, config=CONFIG, security=SECURITY, prefix=setup.prefix
    ) as store:
        return await run_worker(
            store,
            wid,
            setup.concurrency,
            setup.seed,
            setup.deadline,
            setup.lease_ms,
            stop.is_set,
            report,
            setup.die_after if wid == setup.victim else None,
        )


def _worker_process(
    wid: int, setup: ProcessSetup, stop: Event, results: SimpleQueue[tuple[str, int, Any]]
) -> None:
    """Entry point of a worker process: run until told to stop, then send the report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    try:
        report = anyio.run(_worker_on_redis, wid, setup, stop, results)
    except BaseException:
        results.put(("crashed", wid, traceback.format_exc()))
        raise SystemExit(1) from None
    results.put(("done", wid, report))


class CoroutineWorkers:
    """Workers as groups of coroutines in this process (the in-memory backend)."""

    def __init__(self, count: int, concurrency: int, seed: int, lease_ms: int) -> None:
        """Prepare ``count`` workers of ``concurrency`` coroutines each."""
        self.count = count
        self.concurrency = concurrency
        self.seed = seed
        self.lease_ms = lease_ms
        self.reports: dict[int, WorkerReport] = {}
        self.failure: str | None = None
        self.stopping = False

    async def run(self, store: GenericTaskStore, wid: int, deadline: float) -> None:
        """Run worker ``wid`` until stopped; a crash becomes the run's failure."""
        try:
            self.reports[wid] = await run_worker(
                store,
                wid,
                self.concurrency,
                self.seed,
                deadline,
                self.lease_ms,
                lambda: self.stopping,
            )
        except Exception:
            self.failure = f"worker {wid} crashed:\n{traceback.format_exc()}"

    def poll(self) -> Health:
        """Whether every coroutine worker has reported."""
        return Health(len(self.reports) == self.count, self.failure)


class WorkerProcesses:
    """One spawned process per worker, each with a store of its own on Redis."""

    def __init__(self, url: str, prefix: str, concurrency: int, seed: int, lease_ms: int) -> None:
        """Prepare workers on ``url`` under key prefix ``prefix``."""
        self.url = url
        self.prefix = prefix
        self.concurrency = concurrency
        self.seed = seed
        self.lease_ms = lease_ms
        self.reports: dict[int, WorkerReport] = {}
        """Per worker: its final report, or what it sent so far as it went."""
        self.done: set[int] = set()
        self.procs: list[SpawnProcess] = []
        self.results: SimpleQueue[tuple[str, int, Any]] | None = None
        self.stop_event: Event | None = None
        self.victim: int | None = None
        """The worker that kills itself mid-run (``--chaos``), if any."""
        self.exited_at: dict[int, float] = {}
        self.killed: int | None = None
        """The worker SIGKILLed on purpose (``--chaos``), if any."""

    def start(
        self, count: int, deadline: float, victim: int | None = None, die_after: int = 0
    ) -> None:
        """Start ``count`` worker processes (spawn: nothing inherited but the arguments).

        ``victim`` (``--chaos``) SIGKILLs itself once it has ended ``die_after`` tasks,
        while it holds others.
        """
        self.victim = victim
        context = multiprocessing.get_context("spawn")
        self.results = context.SimpleQueue()
        self.stop_event = context.Event()
        setup = ProcessSetup(
            url=self.url,
            prefix=self.prefix,
            concurrency=self.concurrency,
            seed=self.seed,
            deadline=deadline,
            lease_ms=self.lease_ms,
            victim=victim,
            die_after=die_after,
        )
        for wid in range(count):
            self.reports[wid] = WorkerReport(wid)
            proc = context.Process(
                target=_worker_process,
                args=(wid, setup, self.stop_event, self.results),
                name=f"taskstore-demo-worker-{wid}",
                daemon=True,
            )
            proc.start()
            self.procs.append(proc)

    def finish(self) -> None:
        """Tell every worker to stop claiming, finish what it holds and report."""
        if self.stop_event is not None:
            self.stop_event.set()

    def poll(self) -> Health:
        """Collect what arrived; notice a worker that died without a report.

        The worker killed on purpose is not waited for.
        """
        assert self.results is not None
        while not self.results.empty():
            kind, wid, payload = self.results.get()
            report = self.reports[wid]
            if kind == "claimed":
                index, attempt = payload
                report.claims[index] = attempt
            elif kind == "ended":
                index, outcome, merged = payload
                report.outcomes[index] = outcome
                report.merged[index] = merged
            elif kind == "done":
                self.reports[wid] = payload
                self.done.add(wid)
            else:
                return Health(False, f"worker process {wid} crashed:\n{payload}")
        now = time.monotonic()
        for wid, proc in enumerate(self.procs):
            if wid == self.victim and proc.exitcode == -signal.SIGKILL:
                self.killed = wid  # it killed itself, as planned
            if wid in self.done or wid == self.killed or proc.exitcode is None:
                continue
            if now - self.exited_at.setdefault(wid, now) > WORKER_GRACE_S:
                code = proc.exitcode
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return Health(
                    False,
                    f"worker process {wid} (pid {proc.pid}) {how} without reporting: "
                    "the tasks it held wait for their leases to run out",
                )
        return Health(set(range(len(self.procs))) - {self.killed} <= self.done)

    async def collect(self, deadline: float) -> str | None:
        """Stop the workers, wait (bounded) for their reports, then for them to exit.

        Returns what went wrong, or None.
        """
        self.finish()
        while True:
            health = self.poll()
            if health.failure is not None:
                return health.failure
            if health.finished:
                break
            if time.time() >= deadline:
                missing = sorted(set(range(len(self.procs))) - self.done - {self.killed})
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
