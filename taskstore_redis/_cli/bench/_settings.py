"""What a benchmark run measures and how big it is: the scenario matrix and its bounds."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

OPERATIONS = (
    "create",
    "get",
    "update_status",
    "set_variables",
    "complete_with_result",
    "list",
    "cancel",
)
"""The single-operation scenarios, in report order."""

MUTATIONS = frozenset({"update_status", "set_variables", "complete_with_result", "cancel"})
"""Operations that write an existing task by compare-and-set."""

CONSUMING = frozenset({"complete_with_result", "cancel"})
"""Mutations that end a task, so that every operation needs a fresh task."""


@dataclass(frozen=True)
class Layout:
    """Where the concurrent callers of a scenario run.

    ``workers == 0``: ``coroutines`` coroutines in the bench's own process.
    ``workers >= 1``: that many spawned worker processes, each with its own store
    (or raw client) and ``coroutines`` coroutines.
    """

    workers: int
    coroutines: int

    @property
    def label(self) -> str:
        """Short name for tables: ``1x32`` in-process, ``4w x8`` for worker processes."""
        if self.workers == 0:
            return f"1x{self.coroutines}"
        return f"{self.workers}w x{self.coroutines}"

    @property
    def callers(self) -> int:
        """Concurrent callers in all: coroutines times processes."""
        return max(self.workers, 1) * self.coroutines


@dataclass(frozen=True)
class Settings:
    """The sizes and bounds of one benchmark run (the same for every backend of the run)."""

    quick: bool
    duration_s: float
    """A scenario stops after this many seconds of timed work..."""
    ops: int
    """...or after this many operations in all, whichever comes first."""
    concurrency: tuple[int, ...]
    processes: tuple[int, ...]
    coroutines_per_process: int
    auto_pipeline: bool
    page_size: int
    memory_tasks: int
    memory_tasks_per_owner: int
    list_sizes: tuple[int, int]
    count_ops: int
    """Operations per round-trip count."""

    @property
    def layouts(self) -> list[Layout]:
        """Every layout of the matrix: in-process concurrency levels, then worker counts."""
        in_process = [Layout(0, level) for level in self.concurrency]
        workers = [Layout(count, self.coroutines_per_process) for count in self.processes]
        return in_process + workers

    def as_json(self) -> dict[str, object]:
        """The settings as plain JSON."""
        return {
            "quick": self.quick,
            "duration_s": self.duration_s,
            "ops": self.ops,
            "concurrency": list(self.concurrency),
            "processes": list(self.processes),
            "coroutines_per_process": self.coroutines_per_process,
            "auto_pipeline": self.auto_pipeline,
            "page_size": self.page_size,
            "memory_tasks": self.memory_tasks,
            "memory_tasks_per_owner": self.memory_tasks_per_owner,
            "list_sizes": list(self.list_sizes),
            "count_ops": self.count_ops,
        }


FULL = Settings(
    quick=False,
    duration_s=2.0,
    ops=20_000,
    concurrency=(1, 8, 32),
    processes=(1, 2, 4),
    coroutines_per_process=8,
    auto_pipeline=True,
    page_size=50,
    memory_tasks=10_000,
    memory_tasks_per_owner=100,
    list_sizes=(100, 100_000),
    count_ops=20,
)

QUICK = replace(
    FULL,
    quick=True,
    duration_s=0.2,
    ops=64,
    memory_tasks=400,
    list_sizes=(100, 1_000),
    count_ops=3,
)

MAX_DURATION_S = 600.0
MAX_OPS = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``taskstore-redis bench`` to ``parser``."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, for tests and smoke runs (the figures mean nothing)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        default=None,
        help=(
            f"time bound of each scenario in seconds "
            f"(default {FULL.duration_s:g}, quick {QUICK.duration_s:g})"
        ),
    )
    parser.add_argument(
        "--ops",
        type=int,
        metavar="N",
        default=None,
        help=(
            f"operation bound of each scenario, whichever bound comes first "
            f"(default {FULL.ops}, quick {QUICK.ops}); ending scenarios pre-create N tasks"
        ),
    )
    parser.add_argument("--json", metavar="FILE", default=None, help="write every figure here")
    parser.add_argument(
        "--plot", metavar="FILE.png", default=None, help="draw the figures (needs matplotlib)"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also run on a throwaway 3-primary Redis Cluster",
    )
    parser.add_argument(
        "--no-auto-pipeline",
        dest="auto_pipeline",
        action="store_false",
        help="send each command on its own, in the store and in the raw baseline alike",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The run's settings: the full or quick sizes, with ``--duration`` / ``--ops`` applied.

    Raises:
        ValueError: a bound out of range.

    """
    settings = QUICK if args.quick else FULL
    duration = settings.duration_s if args.duration is None else float(args.duration)
    ops = settings.ops if args.ops is None else int(args.ops)
    if not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, got {duration}")
    if not 1 <= ops <= MAX_OPS:
        raise ValueError(f"--ops must be from 1 to {MAX_OPS}, got {ops}")
    return replace(settings, duration_s=duration, ops=ops, auto_pipeline=args.auto_pipeline)
