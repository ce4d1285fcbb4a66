"""One run of the demo: create, work, verify; the options, the progress and the summary."""

from __future__ import annotations

import argparse
import math
import random
import re
import secrets
import time
from collections import Counter

import anyio
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..._async._memory import InMemoryBackend
from ..._async._store import GenericTaskStore
from ..._core import shown
from .._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError
from .client import Bars, Client
from .plan import CONFIG, LEASE_MS, MAX_ERRORS_KEPT, QUEUE, SECURITY, TTL_MS, owner_id
from .verify import CheckResult, Verification
from .worker import CoroutineWorkers, Health, WorkerProcesses, WorkerReport

CHAOS_AFTER = 3
"""``--chaos``'s victim kills itself once it has ended a third of its share of the tasks."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
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
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="SIGKILL one worker process mid-run; its tasks are taken over by the others "
        f"once their lease ({LEASE_MS} ms) runs out, and the run is verified all the same",
    )


class Demo:
    """One run of the demo: the parts and what they found."""

    def __init__(self, args: argparse.Namespace, url: str | None, console: Console) -> None:
        """Set up a run from the command line's options."""
        self.url = url
        self.console = console
        self.workers: int = args.workers
        self.tasks: int = args.tasks
        self.owners: int = args.owners
        self.concurrency: int = args.concurrency
        self.timeout: float = args.timeout
        self.seed: int = args.seed if args.seed is not None else secrets.randbelow(2**31)
        self.prefix: str = args.prefix or f"taskstore-demo-{secrets.token_hex(4)}"
        self.chaos: bool = getattr(args, "chaos", False)
        if self.chaos and url is None:
            raise CliError(
                "--chaos kills a worker process: it needs Redis (not --backend memory)",
                EXIT_USAGE,
            )
        if self.chaos and self.workers < 2:
            raise CliError("--chaos needs --workers 2 or more: one is killed", EXIT_USAGE)
        self.memory = InMemoryBackend() if url is None else None
        self.client = Client(self.tasks, self.owner, random.Random(self.seed))
        self.processes = (
            None
            if url is None
            else WorkerProcesses(url, self.prefix, self.concurrency, self.seed, LEASE_MS)
        )
        self.coroutines = CoroutineWorkers(self.workers, self.concurrency, self.seed, LEASE_MS)
        self.killed_pid: int | None = None
        self.killed_wid: int | None = None
        self.killed_after = 0
        """Tasks the client had seen end when the victim was killed."""
        self.failure: str | None = None
        self.create_s = 0.0
        self.work_s = 0.0
        self.verify_s = 0.0
        self.checks: list[CheckResult] = []
        self.counts: Counter[str] = Counter()

    @property
    def reports(self) -> dict[int, WorkerReport]:
        """The workers' reports received so far, by worker id."""
        return self.coroutines.reports if self.processes is None else self.processes.reports

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
        return owner_id(index % self.owners)

    async def check_fresh(self) -> None:
        """Refuse a key prefix whose demo owners already have tasks: the checks would fail."""
        if self.memory is not None:
            return
        async with self.store() as store:
            for number in range(self.owners):
                if (await store.list(owner_id=owner_id(number), limit=1)).tasks:
                    raise CliError(
                        f"key prefix {self.prefix!r} already holds demo tasks: give another "
                        "--prefix, or none for a new one",
                        EXIT_USAGE,
                    )

    async def main(self, bars: Bars) -> None:
        """Start the workers, submit, follow, stop the workers, verify."""
        deadline = time.time() + self.timeout
        async with self.store() as store:
            if self.processes is not None:
                if self.chaos:
                    self.processes.start(
                        self.workers,
                        deadline,
                        victim=random.Random(self.seed).randrange(self.workers),
                        die_after=max(1, self.tasks // (self.workers * CHAOS_AFTER)),
                    )
                else:
                    self.processes.start(self.workers, deadline)
                await self.work(store, bars, deadline)
                if self.failure is None:
                    self.failure = await self.processes.collect(deadline)
            else:
                async with anyio.create_task_group() as group:
                    for wid in range(self.workers):
                        group.start_soon(self.coroutines.run, store, wid, deadline)
                    await self.work(store, bars, deadline)
                    self.coroutines.stopping = True
                    if self.failure is not None:
                        group.cancel_scope.cancel()  # stop the workers still waiting
        if self.failure is None:
            start = time.perf_counter()
            killed = None if self.processes is None else self.processes.killed
            verification = Verification(
                self.seed,
                self.tasks,
                self.owners,
                self.client.seen,
                self.client.tally,
                self.reports.values(),
                killed=killed,
            )
            async with self.store() as fresh:
                await verification.run(fresh, time.time() + self.timeout)
            self.checks, self.counts = verification.checks, verification.counts
            self.verify_s = time.perf_counter() - start

    async def work(self, store: GenericTaskStore, bars: Bars, deadline: float) -> None:
        """Submit the tasks, then play the client until every task is terminal (or a failure)."""
        start = time.perf_counter()
        self.failure = await self.client.create_all(store, bars, deadline)
        self.create_s = time.perf_counter() - start
        if self.failure is None:
            start = time.perf_counter()
            self.failure = await self.client.play(store, bars, deadline, self.timeout, self.health)
            self.work_s = time.perf_counter() - start

    def health(self) -> Health:
        """The workers' health; with ``--chaos``, the victim's death noted when seen.

        The victim (chosen by the seed) kills itself once it has ended a third of its
        share of the tasks, holding others: the parent only learns of it, so however
        busy the parent is, the kill lands mid-run.
        """
        if self.processes is None:
            return self.coroutines.poll()
        health = self.processes.poll()
        killed = self.processes.killed
        if killed is not None and self.killed_pid is None:
            self.killed_after = sum(task.status is not None for task in self.client.seen)
            self.killed_wid, self.killed_pid = killed, self.processes.procs[killed].pid
        return health

    def stop_processes(self) -> None:
        """Terminate the worker processes still running (after a failure or Ctrl-C)."""
        if self.processes is not None:
            self.processes.stop()

    def summary(self) -> Table:
        """The rich table printed at the end."""
        tally = self.client.tally
        worker_ops = sum(report.ops for report in self.reports.values())
        ops = tally.create_ops + worker_ops + tally.client_ops
        busy = self.create_s + self.work_s
        where = (
            "in-memory backend, one process"
            if self.url is None
            else f"{escape(shown.url(self.url))}, key prefix {self.prefix}"
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
        table.add_row(
            "queue",
            f"{QUEUE!r}: submitted by the client, claimed by the workers with a "
            f"{LEASE_MS} ms lease (renewed every {LEASE_MS // 3} ms)",
        )
        if self.chaos:
            table.add_row("chaos", self.chaos_line())
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
            seen = Counter(
                task.status.value for task in self.client.seen if task.status is not None
            )
            table.add_row(
                "terminal",
                f"{sum(seen.values())} of {self.tasks} seen by the client (completed "
                f"{seen['completed']}, failed {seen['failed']}, cancelled {seen['cancelled']})",
            )
        missing = self.workers - len(self.reports)
        unreported = f", {missing} worker(s) never reported" if missing else ""
        table.add_row(
            "operations",
            f"{ops} (create {tally.create_ops}, workers {worker_ops}, "
            f"client {tally.client_ops}{unreported})",
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

    def chaos_line(self) -> str:
        """What ``--chaos`` did, and what became of the killed worker's tasks."""
        if self.killed_pid is None:
            return "[red]no worker was killed (the run ended first)[/red]"
        line = (
            f"worker {self.killed_wid} (pid {self.killed_pid}) SIGKILLed after "
            f"{self.killed_after} tasks ended"
        )
        if self.checks:
            counts = self.counts
            line += (
                f"; of the {counts['held by the killed worker']} tasks it held, "
                f"{counts['taken over']} were finished by other workers after the lease ran "
                f"out, {counts['cancelled while orphaned']} cancelled by the client meanwhile"
            )
            if counts["ended by the killed worker"]:
                line += (
                    f", {counts['ended by the killed worker']} completed by the killed worker "
                    "itself as it died (its report of them lost)"
                )
        return line

    def error_lines(self) -> list[str]:
        """The unexpected errors the workers and the client reported, first ones first.

        The same error met on many tasks is one line naming the first tasks.
        """
        lines = [line for wid in sorted(self.reports) for line in self.reports[wid].errors]
        tasks: dict[str, list[str]] = {}
        for line in [*lines, *self.client.tally.client_errors]:
            match = _TASK_ERROR.fullmatch(line)
            if match is None:
                tasks.setdefault(line, [])
                continue
            who, task, error = match.groups()
            tasks.setdefault(error, []).append(f"{who} task {task}")
        out = []
        for error, where in tasks.items():
            more = f" and {len(where) - 3} more" if len(where) > 3 else ""
            out.append(f"{error} ({', '.join(where[:3])}{more})" if where else error)
        return out

    def passed(self) -> bool:
        """Whether the run finished and every check passed."""
        return self.failure is None and bool(self.checks) and all(ok for _, ok, _ in self.checks)


_TASK_ERROR = re.compile(r"(worker \d+|client): task (\d+): (.*)", re.S)
"""A worker's or the client's error about one task: who, which task, what."""


def _leaves(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [line for inner in exc.exceptions for line in _leaves(inner)]
    return [f"{type(exc).__name__}: {exc}"]


def _describe(exc: BaseException) -> str:
    """The leaf errors of an exception (group), as ``Type: message``, each one once.

    Coroutines that hit the same error (a server gone) report it once, counted.
    """
    counts = Counter(_leaves(exc))
    return "; ".join(line if n == 1 else f"{line} (x{n})" for line, n in counts.items())


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Run the demo on ``url`` (None: the in-memory backend); return the exit status."""
    demo = Demo(args, url, console)
    anyio.run(demo.check_fresh)
    mode = (
        "in-memory backend, worker coroutine groups in this process"
        if url is None
        else f"{demo.workers} worker processes"
    )
    mode += f" claiming from queue {QUEUE!r} with a {LEASE_MS} ms lease"
    if demo.chaos:
        mode += "; --chaos: a worker is SIGKILLed mid-run"
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
            anyio.run(demo.main, Bars(progress, demo.tasks))
    except KeyboardInterrupt:
        demo.stop_processes()
        raise CliError("interrupted: workers stopped, stores closed", EXIT_INTERRUPTED) from None
    except Exception as exc:  # a store error escaping a task group arrives as a group
        demo.failure = _describe(exc)
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
        owner, where = demo.owner(0), escape(shown.url(url))
        console.print(
            f"inspect: taskstore-redis list --redis-url {where} --prefix {demo.prefix} "
            f"--owner {owner}   (the tasks expire in {TTL_MS // 60_000} minutes)",
            soft_wrap=True,
        )
    elif url is not None:
        console.print(
            f"the tasks were under key prefix {demo.prefix}; the throwaway Redis stops now",
            soft_wrap=True,
        )
    return EXIT_OK if demo.passed() else EXIT_FAILED
