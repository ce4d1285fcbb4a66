"""The demo's client, in the parent process: creates the tasks, answers, cancels, polls.

It polls every unfinished task with ``get``: it answers a task that asks for
input (merges the approval and moves it back to ``working``), cancels the tasks
the plan says to right after their approval (racing the worker), and reads the
result of each task that reached a terminal status.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import anyio
from rich.progress import Progress, TaskID

from ..._async._store import GenericTaskStore
from ..._core.errors import InvalidTransition, NoResult, TaskStoreError
from ..._core.model import JSONValue
from ..._core.status import TaskStatus
from .plan import (
    APPROVED_MESSAGE,
    CONFIG,
    MAX_ERRORS_KEPT,
    POLL_SCALE,
    REQUEST_METHOD,
    TTL_MS,
    Job,
    is_cancel_planned,
)
from .worker import Health

CLIENT_CONCURRENCY = 32
CREATE_CONCURRENCY = 32


@dataclass
class ClientTask:
    """One task as the client sees it."""

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
class Tally:
    """The client's operation counts and unexpected errors."""

    create_ops: int = 0
    client_ops: int = 0
    client_error_count: int = 0
    client_errors: list[str] = field(default_factory=list)

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
        self.created = progress.add_task("tasks created", total=total)
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
        """Create the tasks, ``CREATE_CONCURRENCY`` at a time; return a failure, or None."""
        created: dict[int, str] = {}
        indexes = iter(range(self.tasks))
        failure: str | None = None

        async def lane() -> None:
            nonlocal failure
            for index in indexes:
                if time.time() >= deadline:
                    failure = "the deadline passed while creating the tasks"
                    return
                record = await store.create(self.owner(index), REQUEST_METHOD, ttl_ms=TTL_MS)
                self.tally.create_ops += 1
                created[index] = record.task.task_id
                bars.advance(bars.created)

        async with anyio.create_task_group() as group:
            for _ in range(min(CREATE_CONCURRENCY, self.tasks)):
                group.start_soon(lane)
        self.jobs = [(i, created[i], self.owner(i)) for i in range(self.tasks) if i in created]
        self.seen = [ClientTask(*job) for job in self.jobs]
        return failure

    async def play(
        self,
        store: GenericTaskStore,
        bars: Bars,
        deadline: float,
        timeout: float,
        health_check: Callable[[], Health],
    ) -> str | None:
        """Poll every unfinished task with ``get`` until all are terminal; return a failure."""
        poll_s = CONFIG.poll_interval_ms / 1000 * POLL_SCALE
        pending = list(self.seen)
        rounds_after_workers = 0
        while pending:
            started = time.monotonic()
            todo: Iterator[ClientTask] = iter(pending)

            async def lane(todo: Iterator[ClientTask] = todo) -> None:
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
                return health.failure
            if health.finished and pending:
                rounds_after_workers += 1
                if rounds_after_workers > 2:
                    return (
                        f"{len(pending)} task(s) never reached a terminal state after every "
                        f"worker finished (first: task {pending[0].index})"
                    )
            if pending and time.time() >= deadline:
                return (
                    f"the deadline ({timeout:g} s) passed with {len(pending)} task(s) not terminal"
                )
            await anyio.sleep(max(0.0, poll_s - (time.monotonic() - started)))
        return None

    async def visit(
        self, store: GenericTaskStore, task: ClientTask, bars: Bars, poll_s: float
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
            except NoResult:
                task.result_not_ready = True
            self.tally.client_ops += 1
            task.status = status
            bars.advance(bars.terminal)
