"""``taskstore-redis worker MODULE:FUNCTION``: run ``run_worker`` in N spawned processes.

The parent imports the handler once to check it (a mistake is one line, exit 2),
then starts the worker processes (spawn: each imports the handler itself, builds
its own store, runs the async ``run_worker``) and waits. SIGTERM or Ctrl-C stops
them cleanly: the parent sends each process SIGTERM, each stops claiming, lets
its running handlers finish within the grace period and releases the rest; then
the parent prints what every process did.

With ``--metrics`` every process exports its OpenTelemetry metrics (the store's
operations, the queue's counters, handler durations and gauges) through the
exporter ``OTEL_METRICS_EXPORTER`` names (``otlp`` by default, ``console``), every
``OTEL_METRIC_EXPORT_INTERVAL`` ms, and once more as it stops; the exporter's other
settings come from the standard ``OTEL_*`` variables too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from types import FrameType
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from .._async._store import GenericTaskStore
from .._async._worker import run_worker
from .._core import shown
from .._worker_loop import WorkerStats
from . import _metrics
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError

EXIT_GRACE_S = 5.0
"""After the grace period, how long a stopping process may take before it is killed."""
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
"""Blocked while a worker process starts (it inherits the mask) until its handlers are set."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the worker command's options to its parser."""
    parser.add_argument("target", metavar="MODULE:FUNCTION", help="the handler, e.g. jobs:handle")
    parser.add_argument("--queue", default="default", help="the queue to claim from (default)")
    parser.add_argument(
        "--concurrency", type=_positive, default=8, help="handlers at once per process (8)"
    )
    parser.add_argument("--processes", type=_positive, default=1, help="worker processes (1)")
    parser.add_argument(
        "--lease-ms",
        type=_positive,
        default=None,
        help="lease of a claimed task, renewed while its handler runs (store default: 30000)",
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive,
        default=None,
        help="attempts at most, if fewer than the task's own (default: the task's)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on stop, how long running handlers may finish before being released (30)",
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="export OpenTelemetry metrics with the exporter $OTEL_METRICS_EXPORTER names "
        "(otlp, console; needs opentelemetry-sdk)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def load_handler(target: str, search_path: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNCTION`` (``search_path`` first on ``sys.path``); CliError if it fails."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CliError(f"the handler must be MODULE:FUNCTION, got {target!r}", EXIT_USAGE)
    if search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import module {module_name!r}: {exc}", EXIT_USAGE) from None
    except Exception as exc:  # the module itself raised while being imported
        raise CliError(
            f"importing module {module_name!r} raised {type(exc).__name__}: {exc}", EXIT_USAGE
        ) from None
    for name in attribute.split("."):
        if not hasattr(value, name):
            raise CliError(f"module {module_name!r} has no {attribute!r}", EXIT_USAGE)
        value = getattr(value, name)
    if not callable(value):
        raise CliError(f"{target!r} is not a function (it is a {type(value).__name__})", EXIT_USAGE)
    handler: Callable[..., Any] = value
    return handler


def _options(args: argparse.Namespace) -> dict[str, Any]:
    if not args.grace >= 0:
        raise CliError(f"--grace must be a number >= 0, got {args.grace}", EXIT_USAGE)
    return {
        "queue": args.queue,
        "concurrency": args.concurrency,
        "lease_ms": args.lease_ms,
        "max_attempts": args.max_attempts,
        "grace_s": args.grace,
    }


async def _serve(
    url: str,
    prefix: str,
    handler: Callable[..., Any],
    options: dict[str, Any],
    stop: threading.Event,
) -> WorkerStats:
    async with GenericTaskStore.from_url(url, prefix=prefix) as store:
        return await run_worker(
            store, handler, worker_id=worker_id(), stop=stop, handle_signals=False, **options
        )


def _process(
    index: int,
    url: str,
    prefix: str,
    target: str,
    search_path: str,
    options: dict[str, Any],
    log_level: str,
    results: Queue[tuple[int, Any]],
    export_metrics: bool = False,
) -> None:
    """Entry point of a worker process: run until SIGTERM, then send back what it did."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    logging.basicConfig(
        level=log_level, format=f"worker {index} %(asctime)s %(levelname)s %(message)s"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent at start
    handler = load_handler(target, search_path)
    provider = _metrics.start(worker_id()) if export_metrics else None
    try:
        stats = anyio.run(_serve, url, prefix, handler, options, stop)
    finally:
        if provider is not None:
            provider.shutdown()  # exports what was measured since the last export
    results.put((index, stats))


def worker_id() -> str:
    """The worker id of the running process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Stop(Exception):
    pass


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Run the worker processes on ``url`` until SIGTERM or Ctrl-C; return the exit status."""
    assert url is not None  # the command always works on a server
    search_path = os.getcwd()
    load_handler(args.target, search_path)  # a mistake ends here, before any process starts
    options = _options(args)
    if args.metrics:
        _metrics.exporter_class()  # a missing package or unknown exporter ends here too
    context = multiprocessing.get_context("spawn")
    results: Queue[tuple[int, Any]] = context.Queue()
    procs: list[SpawnProcess] = []
    for index in range(args.processes):
        proc = context.Process(
            target=_process,
            args=(
                index,
                url,
                args.prefix,
                args.target,
                search_path,
                options,
                args.log_level,
                results,
                args.metrics,
            ),
            name=f"taskstore-worker-{index}",
        )
        # a stop sent while a process is starting waits until it can handle it
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        procs.append(proc)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    status = EXIT_OK
    failure = None
    try:
        console.print(  # from here on a stop is handled
            f"worker: {args.processes} process(es) x {args.concurrency} on queue "
            f"{args.queue!r} at {shown.url(url)}, key prefix {args.prefix}; "
            "SIGTERM or Ctrl-C stops",
            soft_wrap=True,
            markup=False,
        )
        failure = _wait(procs)
    except _Stop:
        pass
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(procs, options["grace_s"])
        signal.signal(signal.SIGTERM, previous)
    stats = _collect(results, len(procs))
    console.print(_summary(procs, stats))
    if failure is not None:
        raise CliError(failure, EXIT_FAILED)
    missing = [index for index in range(len(procs)) if index not in stats]
    if missing and status == EXIT_OK:
        codes = [procs[index].exitcode for index in missing]
        raise CliError(
            f"worker process(es) {missing} ended without reporting (exit codes {codes})",
            EXIT_FAILED,
        )
    return status


def _wait(procs: list[SpawnProcess]) -> str | None:
    """Block until a process ends: stopped by a signal sent to it (None), or a failure."""
    while True:
        for index, proc in enumerate(procs):
            proc.join(0.2)
            if proc.exitcode == 0:
                return None  # it was told to stop (SIGTERM to the process group): stop them all
            if proc.exitcode is not None:
                code = proc.exitcode
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                return f"worker process {index} (pid {proc.pid}) {how}; the others were stopped"


def _stop(procs: list[SpawnProcess], grace_s: float) -> None:
    for proc in procs:
        if proc.exitcode is None and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s + EXIT_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.exitcode is None:
            proc.kill()
            proc.join()


def _collect(results: Queue[tuple[int, Any]], count: int) -> dict[int, WorkerStats]:
    stats: dict[int, WorkerStats] = {}
    while len(stats) < count:
        try:
            index, value = results.get(timeout=0.5)
        except queue.Empty:
            break
        stats[index] = value
    results.close()
    results.cancel_join_thread()
    return stats


def _summary(procs: list[SpawnProcess], stats: dict[int, WorkerStats]) -> Table:
    table = Table(title="taskstore-redis worker")
    for column in ("process", "claimed", "completed", "failed", "retried", "lost", "released"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for index, proc in enumerate(procs):
        got = stats.get(index)
        if got is None:
            table.add_row(f"{index} (pid {proc.pid})", *["-"] * 6)
            continue
        table.add_row(
            f"{index} (pid {proc.pid})",
            *(
                str(n)
                for n in (
                    got.claimed,
                    got.completed,
                    got.failed,
                    got.retried,
                    got.lost,
                    got.released,
                )
            ),
        )
    return table
