"""The demo's client, in the parent process: submits the tasks, then follows each one.

One coroutine per task waits (``wait``, no polling) for the next change after
the version it last saw and reacts: it answers a task that asks for input
(merges the approval and moves it back to ``working``), cancels the tasks the
plan says to right after their approval (racing the worker), and reads the
result of each task that reached a terminal status. A monitor beside them stops
the run at the deadline or when a worker fails.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from rich.progress import Progress, TaskID

from ..._async._store import GenericTaskStore
from ..._core.errors import InvalidTransition, NoResult, TaskStoreError, WaitTimeout
from ..._core.model import JSONValue, TaskRecord
from ..._core.status import TaskStatus
from .plan import (
    APPROVED_MESSAGE,
    CANCEL_RACE_S,
    MAX_ERRORS_KEPT,
    QUEUE,
    REQUEST_METHOD,
    TTL_MS,
    Job,
    is_cancel_planned,
)
from .worker import Health

CREATE_CONCURRENCY = 32
CLIENT_WAITERS = 4096
"""Tasks followed at once (one waiting coroutine each), in task order."""
HEALTH_INTERVAL_S = 0.05
"""How often the monitor looks at the workers' health and the deadline."""
FOLLOW_ATTEMPTS = 3
"""Errors on one task the client counts and gets over before it fails the run."""
FINISH_GRACE_S = 2.0
"""How long tasks may stay unfinished for the client once every worker has reported."""


@dataclass
class ClientTask:
    """One task as the client sees it."""

    index: int
    task_id: str
    owner: str
    version: int = 0
    """The last version of the task the client saw (or wrote)."""
    waits: int = 0
    """The client's ``wait`` calls that returned for this task."""
    approved: bool = False
    cancel: str | None = None
    """``cancelled`` if the client's cancel was written, ``too-late`` if it got
    InvalidTransition, None if not attempted."""
    status: TaskStatus | None = None
    """The terminal status the client saw, None until then."""
    result: JSONValue = None
    no_result: bool = False
    """``get_result`` raised NoResult (a cancelled task)."""


@dataclass
class Tally:
    """The client's operation counts and unexpected errors."""

    create_ops: int = 0
    client_ops: int = 0
    client_kinds: Counter[str] = field(default_factory=Counter)
    """The client's operations by method name (``wait``, ``get_result``, ...)."""
    client_error_count: int = 0
    client_errors: list[str] = field(default_factory=list)

    def client_op(self, kind: str) -> None:
        """Count one operation of the client's, by method name."""
        self.client_ops += 1
        self.client_kinds[kind] += 1

    def client_error(self, message: str) -> None:
        """Count an unexpected error; keep the first few messages."""
        self.client_error_count += 1
        if len(self.client_errors) < MAX_ERRORS_KEPT:
            self.client_errors.append(f"client: {message}")


class Bars:
    """The three progress bars (rich), or nothing when the console is not a terminal."""

    def __init__(self, progress: Progress, total: int) -> None:
        """Add the bars to ``progress``."""
        self.progress = progress
        self.created = progress.add_task("tasks submitted", total=total)
        self.answered = progress.add_task("input answered", total=total)
        self.terminal = progress.add_task("terminal", total=total)

    def advance(self, bar: TaskID) -> None:
        """One more on ``bar``."""
        self.progress.advance(bar)


class Client:
    """The client's side of one demo run."""

    def __init__(self, tasks: int, owner: Callable[[int], str], rng: random.Random) -> None:
        """A client for ``tasks`` tasks; ``owner(i)`` owns task ``i``."""
        self.tasks = tasks
        self.owner = owner
        self.rng = rng
        self.tally = Tally()
        self.jobs: list[Job] = []
        self.seen: list[ClientTask] = []

    async def create_all(self, store: GenericTaskStore, bars: Bars, deadline: float) -> str | None:
        """Submit the tasks to the queue, ``CREATE_CONCURRENCY`` at a time; a failure, or None.

        Each task's params name its index; the workers claim them as they come.
        """
        created: dict[int, TaskRecord] = {}
        indexes = iter(range(self.tasks))
        failure: str | None = None

        async def lane() -> None:
            nonlocal failure
            for index in indexes:
                if time.time() >= deadline:
                    failure = "the deadline passed while creating the tasks"
                    return
                record = await store.submit(
                    REQUEST_METHOD,
                    {"index": index},
                    owner_id=self.owner(index),
                    queue=QUEUE,
                    ttl_ms=TTL_MS,
                )
                self.tally.create_ops += 1
                created[index] = record
                bars.advance(bars.created)

        async with anyio.create_task_group() as group:
            for _ in range(min(CREATE_CONCURRENCY, self.tasks)):
                group.start_soon(lane)
        indexes_created = [i for i in range(self.tasks) if i in created]
        self.jobs = [(i, created[i].task.task_id, self.owner(i)) for i in indexes_created]
        self.seen = [ClientTask(*job, version=created[job[0]].version) for job in self.jobs]
        return failure

    async def play(
        self,
        store: GenericTaskStore,
        bars: Bars,
        deadline: float,
        timeout: float,
        health_check: Callable[[], Health],
    ) -> str | None:
        """Follow every task until it is terminal; return a failure, or None.

        A monitor checks the workers' health and the deadline every
        ``HEALTH_INTERVAL_S`` and cancels the waiting coroutines on a failure.
        """
        failure: str | None = None
        late = f"the deadline ({timeout:g} s) passed"
        limiter = anyio.CapacityLimiter(CLIENT_WAITERS)

        async def follow(task: ClientTask, scope: anyio.CancelScope) -> None:
            nonlocal failure
            async with limiter:
                for attempt in range(FOLLOW_ATTEMPTS):
                    try:
                        if attempt:  # react again to the task as it is now
                            record = await store.get(task.task_id, owner_id=task.owner)
                            self.tally.client_op("get")
                            await self.react(store, task, record, bars)
                        await self.follow(store, task, bars, deadline)
                        return
                    except TaskStoreError as exc:
                        # counted (the "no errors" check fails), then tried again from
                        # the version last seen, as the next poll would have
                        self.tally.client_error(f"task {task.index}: {type(exc).__name__}: {exc}")
                failure = failure or f"the client gave up on task {task.index} after errors"
                scope.cancel()

        async def monitor(scope: anyio.CancelScope) -> None:
            nonlocal failure
            finished_at: float | None = None
            while failure is None:
                await anyio.sleep(HEALTH_INTERVAL_S)
                health = health_check()
                if health.failure is not None:
                    failure = health.failure
                elif time.time() >= deadline:
                    failure = self.unfinished(late)
                elif health.finished:
                    finished_at = finished_at or time.monotonic()
                    if time.monotonic() - finished_at > FINISH_GRACE_S:
                        failure = self.unfinished("after every worker finished")
            scope.cancel()

        async with anyio.create_task_group() as outer:
            outer.start_soon(monitor, outer.cancel_scope)
            async with anyio.create_task_group() as group:
                for task in self.seen:
                    group.start_soon(follow, task, outer.cancel_scope)
            outer.cancel_scope.cancel()
        if failure is None and any(task.status is None for task in self.seen):
            failure = self.unfinished(
                late if time.time() >= deadline else "for the client (it stopped following them)"
            )
        if failure is None:
            health = health_check()  # a crash reported as the last task ended
            failure = health.failure
        return failure

    def unfinished(self, when: str) -> str:
        """Describe the tasks not terminal for the client, ``when`` (a clause)."""
        pending = [task for task in self.seen if task.status is None]
        first = f"(first: task {pending[0].index})" if pending else "(none left)"
        if when.startswith("the deadline"):
            return f"{when} with {len(pending)} task(s) not terminal {first}"
        return f"{len(pending)} task(s) never reached a terminal state {when} {first}"

    async def follow(
        self, store: GenericTaskStore, task: ClientTask, bars: Bars, deadline: float
    ) -> None:
        """Wait for each change of one task and react, until it is terminal or the deadline."""
        while task.status is None:
            left = deadline - time.time()
            if left <= 0:
                return
            try:
                record = await store.wait(
                    task.task_id, owner_id=task.owner, after_version=task.version, timeout=left
                )
            except WaitTimeout:
                return
            self.tally.client_op("wait")
            task.waits += 1
            await self.react(store, task, record, bars)

    async def react(
        self, store: GenericTaskStore, task: ClientTask, record: TaskRecord, bars: Bars
    ) -> None:
        """React to one version of a task: answer it, cancel it, or take its result."""
        task.version = record.version
        status = record.task.status
        if status is TaskStatus.INPUT_REQUIRED and not task.approved:
            await store.set_variables(task.task_id, {"approval": "yes"}, owner_id=task.owner)
            self.tally.client_op("set_variables")
            record = await store.update_status(
                task.task_id, TaskStatus.WORKING, APPROVED_MESSAGE, owner_id=task.owner
            )
            self.tally.client_op("update_status")
            task.version = record.version
            task.approved = True
            bars.advance(bars.answered)
            if not is_cancel_planned(task.index):
                return
            # race the worker: half the cancels at once, half after a short random delay
            delay = self.rng.uniform(-CANCEL_RACE_S, CANCEL_RACE_S)
            if delay > 0:
                await anyio.sleep(delay)
            try:
                record = await store.cancel(task.task_id, owner_id=task.owner)
                task.cancel = "cancelled"
            except InvalidTransition:
                task.cancel = "too-late"  # the worker's completion wakes the next wait
            self.tally.client_op("cancel")
            if task.cancel == "too-late":
                return
            task.version = record.version
            status = record.task.status  # cancelled: no change will follow, take it now
        if status.is_terminal:
            try:
                task.result = await store.get_result(task.task_id, owner_id=task.owner)
            except NoResult:
                task.no_result = True
            self.tally.client_op("get_result")
            task.status = status
            bars.advance(bars.terminal)
