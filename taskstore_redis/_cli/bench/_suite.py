"""Every scenario of one backend, in order, each on keys of its own that it deletes after."""

from __future__ import annotations

import contextlib
import itertools
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import redis.exceptions
from rich.console import Console

from ._costs import (
    MemoryFigures,
    RoundTrips,
    count_round_trips,
    create_for_listing,
    measure_memory,
)
from ._runner import JobSpec, Target, WorkerPool, run_in_process
from ._server import Server, delete_prefix, load_scripts
from ._settings import OPERATIONS, Layout, Settings
from ._stats import Figures, combine
from ._workload import owner_of, tasks_for

DEFAULT_PREFIX_LENGTH = len("taskstore")
"""Memory is measured under a key prefix as long as the default one: it is in every key."""


@dataclass(frozen=True)
class ScenarioResult:
    """One operation in one layout: the store's figures and the raw baseline's."""

    operation: str
    layout: Layout
    store: Figures
    raw: Figures | None

    @property
    def ratio(self) -> float | None:
        """Store throughput over raw throughput (None without a baseline)."""
        if self.raw is None or self.raw.throughput == 0:
            return None
        return self.store.throughput / self.raw.throughput


@dataclass(frozen=True)
class ListScale:
    """A first page of one owner's tasks, sequentially, at a small and at a large count."""

    page_size: int
    sizes: tuple[int, int]
    store: tuple[Figures, Figures]
    raw: tuple[Figures, Figures] | None

    @property
    def ratio(self) -> float:
        """p50 latency of a page at the large count over the small one (store)."""
        small, large = self.store
        return large.p50_ms / small.p50_ms if small.p50_ms else math.inf


@dataclass
class RunResult:
    """Everything measured on one backend."""

    mode: str
    """``standalone``, ``cluster`` or ``memory``."""
    server: Server | None
    scenarios: list[ScenarioResult] = field(default_factory=list)
    round_trips: dict[str, dict[str, RoundTrips]] | None = None
    """Per operation, per side (``store``, ``raw``): the common case, a remembered task."""
    round_trips_not_remembered: RoundTrips | None = None
    """A mutation (cancel) by a store that has never seen the task (another process's)."""
    memory: list[MemoryFigures] | None = None
    list_scale: ListScale | None = None
    notes: list[str] = field(default_factory=list)


class Suite:
    """Runs every scenario on one backend (``server`` None: the in-memory backend)."""

    def __init__(
        self, settings: Settings, server: Server | None, prefix: str, console: Console
    ) -> None:
        """Prepare to run; keys will be named ``{<prefix>-<n>:...}``, one n per scenario."""
        self._settings = settings
        self._server = server
        self._prefix = prefix
        self._console = console
        self._numbers = itertools.count()
        self._sides = ("store", "raw") if server is not None else ("store",)

    def run(self) -> RunResult:
        """Run the matrix, the round trips, the memory and the list at scale."""
        server = self._server
        result = RunResult(mode=server.mode if server else "memory", server=server)
        if server is not None:
            load_scripts(server)
        workers = max(self._settings.processes, default=0)
        with WorkerPool(workers) as pool:
            for operation in OPERATIONS:
                for layout in self._settings.layouts:
                    result.scenarios.append(self._scenario(pool, operation, layout))
        if server is not None and not server.cluster:
            result.round_trips, result.round_trips_not_remembered = self._round_trips()
        elif server is not None:
            result.notes.append("round trips are counted on standalone Redis only")
        if server is not None:
            result.memory = self._memory(server)
        result.list_scale = self._list_scale()
        return result

    @contextmanager
    def _scratch(self, *, short_prefix: bool = False) -> Iterator[Target]:
        """A target with a fresh key prefix, whose keys are deleted afterwards.

        ``short_prefix``: a random prefix as long as the default ``taskstore``.
        """
        server = self._server
        number = next(self._numbers)
        target = Target(
            url=server.url if server else None,
            cluster=server.cluster if server else False,
            prefix=(
                "b" + secrets.token_hex(DEFAULT_PREFIX_LENGTH // 2)
                if short_prefix
                else f"{self._prefix}-{number}"
            ),
            auto_pipeline=self._settings.auto_pipeline,
        )
        try:
            yield target
        except BaseException:  # Ctrl-C or a failure: clean up if Redis still answers
            if server is not None:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    delete_prefix(server, target.prefix)
            raise
        if server is not None:
            delete_prefix(server, target.prefix)

    def _progress(self, text: str) -> None:
        self._console.print(f"[dim]{text}[/dim]", highlight=False)

    # --- the matrix ------------------------------------------------------------------------

    def _scenario(self, pool: WorkerPool, operation: str, layout: Layout) -> ScenarioResult:
        figures = {side: self._measure(pool, operation, layout, side) for side in self._sides}
        scenario = ScenarioResult(
            operation=operation, layout=layout, store=figures["store"], raw=figures.get("raw")
        )
        ratio = "" if scenario.ratio is None else f", store/raw {scenario.ratio:.2f}"
        self._progress(f"{operation} {layout.label}: {scenario.store.throughput:,.0f} ops/s{ratio}")
        return scenario

    def _measure(self, pool: WorkerPool, operation: str, layout: Layout, side: str) -> Figures:
        settings = self._settings
        per_lane = max(1, math.ceil(settings.ops / layout.callers))
        with self._scratch() as target:
            specs = [
                JobSpec(
                    target=target,
                    operation=operation,
                    side=side,
                    lanes=layout.coroutines,
                    first_lane=process * layout.coroutines,
                    ops_per_lane=per_lane,
                    tasks_per_lane=tasks_for(operation, per_lane),
                    duration_s=settings.duration_s,
                    page_size=settings.page_size,
                )
                for process in range(max(layout.workers, 1))
            ]
            if layout.workers == 0:
                return combine([run_in_process(specs[0])])
            return combine(pool.run(specs))

    # --- costs -----------------------------------------------------------------------------

    def _round_trips(self) -> tuple[dict[str, dict[str, RoundTrips]], RoundTrips]:
        counts: dict[str, dict[str, RoundTrips]] = {}
        ops, page = self._settings.count_ops, self._settings.page_size
        for operation in OPERATIONS:
            counts[operation] = {}
            for side in self._sides:
                with self._scratch() as target:
                    counts[operation][side] = count_round_trips(target, operation, side, ops, page)
        with self._scratch() as target:
            unseen = count_round_trips(target, "cancel", "store", ops, page, remember=False)
        self._progress(
            "round trips per operation: "
            + ", ".join(f"{op} {sides['store'].round_trips:g}" for op, sides in counts.items())
            + f"; a mutation of a task not remembered {unseen.round_trips:g}"
        )
        return counts, unseen

    def _memory(self, server: Server) -> list[MemoryFigures]:
        tasks = self._settings.memory_tasks
        layouts = sorted({min(self._settings.memory_tasks_per_owner, tasks), tasks})
        figures = []
        for per_owner in layouts:
            with self._scratch(short_prefix=True) as target:
                measured = measure_memory(server, target, tasks, per_owner)
            figures.append(measured)
            self._progress(
                f"memory, {per_owner} tasks per owner: "
                f"{measured.used_memory_delta_per_task:,.0f} B per task (used_memory delta)"
            )
        return figures

    def _list_scale(self) -> ListScale:
        small, large = self._settings.list_sizes
        store: list[Figures] = []
        raw: list[Figures] = []
        for size in (small, large):
            with self._scratch() as target:
                if target.url is not None:
                    anyio.run(create_for_listing, target, owner_of(0), size)
                for side in self._sides:
                    # On Redis the tasks exist already; in memory each job makes its own.
                    spec = JobSpec(
                        target=target,
                        operation="list",
                        side=side,
                        lanes=1,
                        first_lane=0,
                        ops_per_lane=self._settings.ops,
                        tasks_per_lane=0 if target.url is not None else size,
                        duration_s=self._settings.duration_s,
                        page_size=self._settings.page_size,
                    )
                    (store if side == "store" else raw).append(combine([run_in_process(spec)]))
            self._progress(f"list page at {size:,} tasks: p50 {store[-1].p50_ms:.3f} ms")
        return ListScale(
            page_size=self._settings.page_size,
            sizes=(small, large),
            store=(store[0], store[1]),
            raw=(raw[0], raw[1]) if raw else None,
        )
