"""``taskstore-redis bench``: the store against raw redis-py sending the same commands.

For each operation (create, get, update_status, set_variables,
complete_with_result, list, cancel) and each layout (1, 8 and 32 coroutines in
one process; 1, 2 and 4 spawned worker processes of 8 coroutines), the async
store and a raw ``redis.asyncio`` baseline each run on keys of their own;
throughput and latency percentiles are reported with the ratio store/raw. Then
round trips per operation, Redis memory per minimal task, and a list page at a
small and a large owner. The method is described in ``benchmarks/README.md``.

Modules: ``_settings`` (options, sizes), ``_workload`` (each operation, store
and raw), ``_runner`` (timing, worker processes), ``_costs`` (round trips,
memory), ``_suite`` (the scenarios of one backend), ``_report`` (targets,
tables, JSON, plot).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import redis.exceptions
from rich.console import Console

from ..._core.errors import TaskStoreError
from ...testing import RedisServerError, RedisUnavailable, redis_cluster
from .._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError
from . import _settings
from ._report import document, environment, plot, plotting_available, render
from ._server import describe
from ._suite import RunResult, Suite
from ._workload import BenchError

__all__ = ["add_arguments", "run"]

_PREFIX_STEM = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``taskstore-redis bench`` to ``parser``."""
    _settings.add_arguments(parser)


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Run the benchmark on Redis at ``url`` (None: the in-memory backend); return the exit code.

    Prints the tables; writes ``--json`` and ``--plot`` if asked. Missed targets
    are reported, not turned into a failing exit code. Bad bounds and a missing
    matplotlib raise CliError (usage) before anything runs.
    """
    try:
        settings = _settings.settings_from_args(args)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if args.plot and not plotting_available():
        raise CliError("--plot needs matplotlib: pip install 'taskstore-redis[plot]'", EXIT_USAGE)
    env = environment()
    warnings = _warnings(settings, env)
    for warning in warnings:
        console.print(warning, style="yellow", markup=False)
    prefix = (
        f"{str(getattr(args, 'prefix', 'taskstore'))[:_PREFIX_STEM]}-bench-{secrets.token_hex(3)}"
    )
    runs: list[RunResult] = []
    failure: str | None = None
    with _interrupts() as interrupted:
        try:
            _run_suites(args, url, settings, prefix, console, runs)
        except BaseException as exc:
            if interrupted.is_set() and not isinstance(exc, KeyboardInterrupt):
                # Ctrl-C also stops a throwaway Redis in the same process group: what
                # failed after it is the interruption, not a problem to report.
                raise KeyboardInterrupt from None
            cause = _first_leaf(exc)
            if not isinstance(cause, _EXPECTED_FAILURES):
                raise
            failure = f"benchmark failed: {type(cause).__name__}: {cause}"
    env["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    for result in runs:
        render(console, result, judged=not settings.quick)
    if runs:
        _write_outputs(args, console, settings, env, runs, warnings)
    if failure is not None:
        raise CliError(failure, EXIT_FAILED)
    return EXIT_OK


_EXPECTED_FAILURES = (
    BenchError,
    TaskStoreError,
    RedisUnavailable,
    RedisServerError,
    redis.exceptions.RedisError,
    OSError,
)


def _run_suites(
    args: argparse.Namespace,
    url: str | None,
    settings: _settings.Settings,
    prefix: str,
    console: Console,
    runs: list[RunResult],
) -> None:
    """Run on each backend asked for, appending each result to ``runs`` as it completes."""
    if url is None:
        console.print(
            "[yellow]--backend memory: the store scenarios run on InMemoryBackend only "
            "(each worker process has its own); no raw Redis baseline, no round trips, "
            "no Redis memory[/yellow]"
        )
        if args.cluster:
            console.print("[yellow]--cluster is ignored with --backend memory[/yellow]")
        runs.append(Suite(settings, None, prefix, console).run())
        return
    runs.append(Suite(settings, describe(url), prefix, console).run())
    if args.cluster:
        runs.append(_run_on_throwaway_cluster(settings, prefix, console))


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups, as task groups raise them."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@contextmanager
def _interrupts() -> Iterator[threading.Event]:
    """Note Ctrl-C (and raise KeyboardInterrupt as usual) while the benchmark runs."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_on_throwaway_cluster(
    settings: _settings.Settings, prefix: str, console: Console
) -> RunResult:
    console.print("[dim]starting a throwaway 3-primary Redis Cluster[/dim]")
    with redis_cluster(primaries=3) as cluster:
        return Suite(settings, describe(cluster.url), f"{prefix}-c", console).run()


def _warnings(settings: _settings.Settings, env: dict[str, object]) -> list[str]:
    warnings = []
    if settings.quick:
        warnings.append("--quick: tiny sizes to check the harness; the figures mean nothing")
    load, cpus = env.get("loadavg_start"), env.get("cpu_count")
    if isinstance(load, list) and isinstance(cpus, int) and load[0] > 0.5 * cpus:
        warnings.append(
            f"the machine is busy (load average {load[0]:.2f} on {cpus} CPUs): "
            "do not publish these figures"
        )
    return warnings


def _write_outputs(
    args: argparse.Namespace,
    console: Console,
    settings: _settings.Settings,
    env: dict[str, object],
    runs: list[RunResult],
    warnings: list[str],
) -> None:
    if args.json:
        path = Path(args.json)
        text = json.dumps(document(settings, env, runs, warnings), indent=2)
        path.write_text(text + "\n", encoding="utf-8")
        console.print(f"figures written to {path}", markup=False)
    if args.plot:
        plot(args.plot, runs)
        console.print(f"plot written to {args.plot}", markup=False)
