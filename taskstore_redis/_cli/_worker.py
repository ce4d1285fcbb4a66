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
import math
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
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
from .._core.config import StoreConfig
from .._core.errors import InvalidArgument
from .._core.shown import scrub
from .._core.validation import (
    MAX_QUEUE_NAME_LENGTH,
    check_count,
    check_queue,
    check_worker_id,
    resolve_lease_ms,
    resolve_max_attempts,
)
from .._core.worker_rules import DEFAULT_SETTINGS, WorkerSettings
from .._worker_loop import WorkerStats
from . import _metrics
from ._exit import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError

EXIT_GRACE_S = 5.0
"""After the grace period, how long a stopping process may take before it is killed."""
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
"""Blocked while a worker process starts (it inherits the mask) until its handlers are set."""
MAX_PROCESSES = 256
"""``--processes`` at most."""
MAX_GRACE_S = 86_400.0
"""``--grace`` at most: one day."""
MAX_TARGET_LENGTH = 1_000
"""``MODULE:FUNCTION`` at most this many characters."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the worker command's options to its parser."""
    parser.add_argument("target", metavar="MODULE:FUNCTION", help="the handler, e.g. jobs:handle")
    parser.add_argument(
        "--queue",
        default=DEFAULT_SETTINGS.queue,
        help=f"the queue to claim from ({DEFAULT_SETTINGS.queue})",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=DEFAULT_SETTINGS.concurrency,
        help=f"handlers at once per process ({DEFAULT_SETTINGS.concurrency})",
    )
    parser.add_argument("--processes", type=_positive, default=1, help="worker processes (1)")
    parser.add_argument(
        "--lease-ms",
        type=_positive,
        default=None,
        help="lease of a claimed task, renewed while its handler runs "
        f"(store default: {StoreConfig().default_lease_ms})",
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
        default=DEFAULT_SETTINGS.grace_s,
        metavar="SECONDS",
        help="on stop, how long running handlers may finish before being released "
        f"({DEFAULT_SETTINGS.grace_s:g})",
    )
    parser.add_argument(
        "--no-schedules",
        action="store_true",
        help="fire no schedules (by default each worker process fires them as they come due; "
        "each tick still submits one task)",
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


def check(args: argparse.Namespace) -> None:
    """Every option of ``worker``, and its handler imported once: CliError (usage) if wrong.

    Runs in the parent before any server is reached or process started, with the
    limits of the store the processes open, so no process meets a setting it refuses.
    """
    target = args.target
    if not target.isprintable() or len(target) > MAX_TARGET_LENGTH:
        raise CliError(f"the handler must be MODULE:FUNCTION, got '{_cut(target)}'", EXIT_USAGE)
    if not math.isfinite(args.grace) or not 0 <= args.grace <= MAX_GRACE_S:
        raise CliError(
            f"--grace must be a number of seconds from 0 to {MAX_GRACE_S:.0f}, got {args.grace}",
            EXIT_USAGE,
        )
    if args.processes > MAX_PROCESSES:
        raise CliError(
            f"--processes must be from 1 to {MAX_PROCESSES}, got {args.processes}", EXIT_USAGE
        )
    check_settings(_options(args), StoreConfig(), f"{socket.gethostname()}:{2**22}")
    load_handler(target, os.getcwd())  # a mistake ends here, before any process starts


def check_settings(options: dict[str, Any], config: StoreConfig, worker: str) -> None:
    """The settings of ``run_worker`` against the store's limits: CliError (usage) if refused.

    The store checks them again at each claim, where a refusal would repeat
    forever; here it is one line, before the first.
    """
    queue = options["queue"]
    if not isinstance(queue, str) or not queue.isprintable():
        raise CliError(f"--queue must not hold control characters, got '{_cut(queue)}'", EXIT_USAGE)
    checks: list[tuple[str, Callable[[], object]]] = [
        ("--queue", lambda: check_queue(queue)),
        ("--concurrency", lambda: check_count(options["concurrency"], config)),
        ("--lease-ms", lambda: resolve_lease_ms(options["lease_ms"], config)),
        ("--max-attempts", lambda: resolve_max_attempts(options["max_attempts"], config)),
        ("the worker id (host:pid)", lambda: check_worker_id(worker)),
        ("", lambda: WorkerSettings(**options, worker_id=worker)),
    ]
    for option, run_check in checks:
        try:
            run_check()
        except InvalidArgument as exc:
            refused = _refusal(option, options, exc, config)
            raise CliError(refused, EXIT_USAGE) from None


def _refusal(option: str, options: dict[str, Any], exc: Exception, config: StoreConfig) -> str:
    """What is wrong with ``option``, in the command's words, never echoing a long value."""
    if option == "--queue":
        queue = options["queue"]
        return (
            f"--queue must be 1 to {MAX_QUEUE_NAME_LENGTH} characters, "
            f"got {len(queue)}: '{_cut(queue)}'"
        )
    if option == "--concurrency":
        limit = config.max_claim_count
        return f"--concurrency must be from 1 to {limit}, got {options['concurrency']}"
    if option:
        return f"{option}: {exc}"
    return str(exc)


def _cut(text: str, limit: int = 40) -> str:
    """``text`` for a message: control characters escaped, at most ``limit`` characters."""
    text = shown.printable(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    if not callable(value) and not callable(getattr(value, "worker_handler", None)):
        raise CliError(f"{target!r} is not a function (it is a {type(value).__name__})", EXIT_USAGE)
    handler: Callable[..., Any] = value
    return handler


def bound_handler(handler: Any, store: GenericTaskStore) -> Callable[..., Any]:
    """The handler to run: ``handler`` itself, or what its ``worker_handler(store)`` makes.

    An object with a ``worker_handler(store)`` method (``taskstore_redis.mcp.TaskTools``,
    say) is a handler that needs the worker's store; it is asked for its handler once
    the store is open.
    """
    factory = getattr(handler, "worker_handler", None)
    if callable(factory):
        made: Callable[..., Any] = factory(store)
        return made
    plain: Callable[..., Any] = handler
    return plain


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "queue": args.queue,
        "concurrency": args.concurrency,
        "lease_ms": args.lease_ms,
        "max_attempts": args.max_attempts,
        "grace_s": args.grace,
        "schedules": not args.no_schedules,
    }


@dataclass(frozen=True)
class _Refused:
    """A worker process's refusal at start (a setting, the handler): what the parent reports."""

    message: str
    status: int


class _ShownFormatter(logging.Formatter):
    """Log lines for people: credentials of the URL masked, control characters escaped.

    A message (a task id, a handler's exception text) stays on its one line; a
    traceback keeps its lines, each escaped.
    """

    def __init__(self, fmt: str, url: str) -> None:
        super().__init__(fmt)
        self.url = url

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = scrub(record.message, [self.url])
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        kind, value, tb = ei
        return "\n".join(self._traceback(traceback.TracebackException(kind, value, tb)))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(scrub(line, [self.url]) for line in stack_info.split("\n"))

    def _traceback(self, exc: traceback.TracebackException) -> list[str]:
        """The lines of a traceback, each exception's text on one line of its own."""
        lines: list[str] = []
        if exc.__cause__ is not None:
            lines += self._traceback(exc.__cause__)
            lines += [
                "",
                "The above exception was the direct cause of the following exception:",
                "",
            ]
        elif exc.__context__ is not None and not exc.__suppress_context__:
            lines += self._traceback(exc.__context__)
            lines += ["", "During handling of the above exception, another exception occurred:", ""]
        if exc.stack:
            lines.append("Traceback (most recent call last):")
            lines += [line for frame in exc.stack.format() for line in frame.rstrip().split("\n")]
        lines += [scrub(part.rstrip("\n"), [self.url]) for part in exc.format_exception_only()]
        return [scrub(line, [self.url]) for line in lines]


def _log_to_stderr(index: int, log_level: str, url: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        _ShownFormatter(f"worker {index} %(asctime)s %(levelname)s %(message)s", url)
    )
    logging.basicConfig(level=log_level, handlers=[handler], force=True)


async def _serve(
    url: str,
    prefix: str,
    handler: Callable[..., Any],
    options: dict[str, Any],
    stop: threading.Event,
) -> WorkerStats:
    async with GenericTaskStore.from_url(url, prefix=prefix) as store:
        me = worker_id()
        check_settings(options, store.config, me)  # the parent checked; this store decides
        return await run_worker(
            store,
            bound_handler(handler, store),
            worker_id=me,
            stop=stop,
            handle_signals=False,
            **options,
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
    """Entry point of a worker process: run until SIGTERM, then send back what it did.

    A refusal at start (the handler no longer imports, a setting the store refuses)
    is sent back instead, and the process exits with status 2 at once: the parent
    reports it in one line, and nothing retries it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    _log_to_stderr(index, log_level, url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent at start
    provider = None
    try:
        handler = load_handler(target, search_path)
        provider = _metrics.start(worker_id()) if export_metrics else None
        stats = anyio.run(_serve, url, prefix, handler, options, stop)
    except CliError as exc:
        results.put((index, _Refused(str(exc), exc.status)))
        sys.exit(EXIT_USAGE)
    except InvalidArgument as exc:
        message = f"{type(exc).__name__}: {scrub(str(exc), [url])}"
        results.put((index, _Refused(message, EXIT_USAGE)))
        sys.exit(EXIT_USAGE)
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
    search_path = os.getcwd()  # the handler was imported from here by ``check``
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
            f"'{shown.printable(args.queue)}' at {shown.url(url)}, key prefix {args.prefix}; "
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
    stats, refused = _collect(results, len(procs))
    if refused is not None:  # a process refused to start: nothing was done
        raise CliError(refused.message, refused.status)
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


def _collect(
    results: Queue[tuple[int, Any]], count: int
) -> tuple[dict[int, WorkerStats], _Refused | None]:
    """What each process sent back: its stats, or the first refusal at start."""
    stats: dict[int, WorkerStats] = {}
    refused: _Refused | None = None
    for _ in range(count):
        try:
            index, value = results.get(timeout=0.5)
        except queue.Empty:
            break
        if isinstance(value, _Refused):
            refused = refused if refused is not None else value
        else:
            stats[index] = value
    results.close()
    results.cancel_join_thread()
    return stats, refused


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
