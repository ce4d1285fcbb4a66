"""The parser of ``taskstore-redis`` and the running of one subcommand.

Where a subcommand works (a checked and reachable URL, a throwaway server, or
the in-memory backend), and how its failures end: one line on stderr and an
exit status from ``_exit``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console

from .. import __version__
from .._core import shown
from .._core.errors import InvalidArgument, TaskStoreError
from .._core.shown import scrub
from .._redis.keys import KeySchema
from ..testing import REDIS_URL_ENV, RedisServerError, RedisUnavailable, redis_url_for_tests
from ._connect import DEFAULT_URL, check_url, inspect_default, probe
from ._exit import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
)

Runner = Callable[[argparse.Namespace, "str | None", Console], int]
Checker = Callable[[argparse.Namespace], None]

EXIT_STATUSES = """\
exit status:
  0    done; every check passed
  1    the command ran and failed: a check failed, no such task, a refusal
  2    usage or bad input: option, URL, key prefix, cursor, missing extra
  3    no server: unreachable, credentials refused, no throwaway Redis
  130  interrupted
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: what is wrong and where to look."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: message (see prog --help)`` on stderr and exit with status 2."""
        line = shown.printable(message)  # argparse echoes some arguments as they were typed
        self.exit(EXIT_USAGE, f"{self.prog}: {line} (see {self.prog} --help)\n")


def fail(message: str) -> None:
    """Print one error line on stderr, its control characters escaped."""
    line = " ".join(shown.printable(message).split())
    print(f"taskstore-redis: {line}", file=sys.stderr)


def _parser() -> _Parser:
    from . import _control, _dashboard, _doctor, _inspect, _queues, _schedules, _top, _worker
    from . import bench as _bench
    from . import demo as _demo

    parser = _Parser(
        prog="taskstore-redis",
        description="A Redis-native store for long-running tasks.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    throwaway = _Parser(add_help=False)
    throwaway.add_argument(
        "--redis-url",
        default=os.environ.get(REDIS_URL_ENV) or None,
        metavar="URL",
        help=f"Redis or Redis Cluster URL (default: ${REDIS_URL_ENV}, else a throwaway server)",
    )
    throwaway.add_argument(
        "--backend",
        choices=["redis", "memory"],
        default="redis",
        help="memory: single process, no Redis needed",
    )
    inspecting = _Parser(add_help=False)
    inspecting.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help=f"Redis or Redis Cluster URL (default: ${REDIS_URL_ENV}, else {DEFAULT_URL})",
    )
    inspecting.add_argument(
        "--prefix", default="taskstore", help="key prefix of the store (default: taskstore)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        parents: list[_Parser],
        run: Runner,
        help: str,
        description: str,
        check: Checker | None = None,
    ) -> _Parser:
        sub: _Parser = commands.add_parser(
            name,
            parents=parents,
            help=help,
            description=description,
            epilog=EXIT_STATUSES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run, check=check, inspects=parents[0] is inspecting)
        return sub

    demo = add(
        "demo",
        [throwaway],
        _demo.run,
        help="worker processes share a store; the outcome is checked",
        description="Worker processes share one store; the demo checks every task at the end.",
    )
    demo.add_argument(
        "--prefix",
        default=None,
        help="key prefix of the demo's tasks, used as given "
        "(default: taskstore-demo-<random>, new every run)",
    )
    _demo.add_arguments(demo)

    bench = add(
        "bench",
        [throwaway],
        _bench.run,
        help="benchmarks against raw Redis",
        description="The store against raw redis-py sending the same commands.",
    )
    bench.add_argument(
        "--prefix",
        default="taskstore",
        help="stem of the benchmark's key prefix, <stem>-bench-<random> (default: taskstore)",
    )
    _bench.add_arguments(bench)

    get = add(
        "get",
        [inspecting],
        _inspect.get,
        help="show one task",
        description="Show a task.",
        check=_inspect.check_get,
    )
    get.add_argument("task_id", metavar="TASK_ID")
    get.add_argument("--owner", required=True, help="the owner id of the task")
    get.add_argument("--json", action="store_true", help="print the task as JSON")

    listing = add(
        "list",
        [inspecting],
        _inspect.list_tasks,
        help="list an owner's tasks",
        description="List an owner's tasks, newest first, one page at a time.",
        check=_inspect.check_list,
    )
    listing.add_argument("--owner", required=True, help="the owner id")
    listing.add_argument("--limit", type=int, default=None, metavar="N", help="tasks per page")
    listing.add_argument("--cursor", default=None, help="the page after this cursor")
    listing.add_argument("--json", action="store_true", help="print the page as JSON")

    add(
        "cleanup",
        [inspecting],
        _inspect.cleanup,
        help="purge expired tasks",
        description="Purge the expired tasks of the key prefix.",
    )
    add(
        "doctor",
        [inspecting],
        _doctor.run,
        help="check a Redis for the store",
        description="Check a server for the store: version, scripts, permissions, latency.",
    )
    worker = add(
        "worker",
        [inspecting],
        _worker.run,
        help="run a handler on a queue's tasks",
        description="Claim tasks from a queue and run MODULE:FUNCTION on each, in N processes, "
        "until SIGTERM or Ctrl-C.",
        check=_worker.check,
    )
    _worker.add_arguments(worker)
    queues = add(
        "queues",
        [inspecting],
        _queues.run,
        help="show the queues",
        description="Every queue of the key prefix: paused or not, ready, delayed, leased, "
        "oldest waiting, recovered and given-up counts.",
    )
    queues.add_argument("--json", action="store_true", help="print the numbers as JSON")
    for name, run, what in (
        (
            "pause",
            _control.pause,
            "Pause a queue: workers lease none of its tasks until "
            "`resume`; leases held go on, and submits still land.",
        ),
        ("resume", _control.resume, "Resume a paused queue: its workers are told at once."),
    ):
        paused = add(
            name,
            [inspecting],
            run,
            help=what.partition(":")[0].lower(),
            description=what,
            check=_control.check_queue_name,
        )
        paused.add_argument("queue", metavar="QUEUE")
    limits = add(
        "limits",
        [inspecting],
        _control.limits,
        help="show or set a queue's limits",
        description="Show the limits of a queue and its groups; with a limit (or --clear), "
        "set the limits of the queue, or of --group, first. The limits given replace the "
        "target's: a limit not given is removed.",
        check=_control.check_limits,
    )
    limits.add_argument("queue", metavar="QUEUE")
    limits.add_argument("--group", default=None, help="a group of the queue (default: the queue)")
    limits.add_argument(
        "--max-concurrency", type=int, default=None, metavar="N", help="most leases held at once"
    )
    limits.add_argument(
        "--per-second", type=float, default=None, metavar="R", help="most claims per second"
    )
    limits.add_argument(
        "--burst", type=int, default=None, metavar="B", help="claims at once after a quiet spell"
    )
    limits.add_argument("--clear", action="store_true", help="remove the target's limits")
    limits.add_argument("--json", action="store_true", help="print the limits as JSON")
    resubmit = add(
        "resubmit",
        [inspecting],
        _control.resubmit,
        help="submit a failed or cancelled task again",
        description="Submit a failed or cancelled task again, as a new task with the same "
        "method, params, queue and priority; the old task stays as it is.",
        check=_control.check_resubmit,
    )
    resubmit.add_argument("task_id", metavar="TASK_ID")
    resubmit.add_argument("--owner", required=True, help="the owner id of the task")
    resubmit.add_argument(
        "--delay-ms", type=int, default=0, metavar="MS", help="claimable this long from now"
    )
    resubmit.add_argument("--json", action="store_true", help="print the new task as JSON")
    schedules = add(
        "schedules",
        [inspecting],
        _schedules.run,
        help="show the schedules",
        description="Every schedule of the key prefix: its owner, queue, method, cron or "
        "interval, next and last fire times, and the last task it submitted.",
    )
    schedules.add_argument("--json", action="store_true", help="print the schedules as JSON")
    unscheduling = add(
        "unschedule",
        [inspecting],
        _schedules.unschedule,
        help="delete a schedule",
        description="Delete the schedule NAME: it submits no more tasks; those it submitted "
        "stay. Exits 0 whether or not it existed (the output says which).",
        check=_schedules.check_unschedule,
    )
    unscheduling.add_argument("name", metavar="NAME")
    top = add(
        "top",
        [inspecting],
        _top.run,
        help="watch queues, workers and failures live",
        description="A live view of the key prefix's queues (ready, delayed, leased, oldest "
        "waiting, throughput), the next fires of its schedules, the workers and their leases, "
        "and recent failures, until Ctrl-C.",
    )
    _top.add_arguments(top)
    dashboard = add(
        "dashboard",
        [inspecting],
        _dashboard.run,
        help="serve the web dashboard",
        description="Serve a web dashboard of the key prefix's queues, workers, failures, "
        "tasks and owners, until Ctrl-C. It listens on 127.0.0.1 unless --host says "
        "otherwise; without --token or --token-file it is read-only.",
        check=_dashboard.check,
    )
    _dashboard.add_arguments(dashboard)
    return parser


@contextmanager
def _where(args: argparse.Namespace, console: Console) -> Iterator[str | None]:
    """Yield the checked, reachable Redis URL to work on, or None for the in-memory backend."""
    if getattr(args, "backend", "redis") == "memory":
        yield None
        return
    url: str | None = args.redis_url
    if args.inspects and not url:
        url = inspect_default()
    if url:
        check_url(url)
        probe(url)
        yield url
        return
    try:
        with redis_url_for_tests() as throwaway:
            console.print(f"using a throwaway Redis at {throwaway}", style="dim", markup=False)
            yield throwaway
    except (RedisUnavailable, RedisServerError) as exc:
        raise CliError(
            f"no Redis: {exc} (or give --redis-url, or run with --backend memory)",
            EXIT_UNREACHABLE,
        ) from None


def _check_arguments(args: argparse.Namespace) -> None:
    """Check every option before anything is reached or started: CliError (usage) if bad."""
    prefix = getattr(args, "prefix", None)
    url: str | None = getattr(args, "redis_url", None)
    if args.inspects and not url:
        url = inspect_default()
    if url and getattr(args, "backend", "redis") == "redis":
        check_url(url)
    try:
        if prefix is not None:
            KeySchema(prefix)
        check: Checker | None = args.check
        if check is not None:
            check(args)
    except InvalidArgument as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def run_command(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand; return the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    console = Console(emoji=False, highlight=False)  # ":o:" in a message stays as it is
    run: Runner = args.run
    try:
        _check_arguments(args)
        with _where(args, console) as url:
            return run(args, url, console)
    except CliError as exc:
        fail(str(exc))
        return exc.status
    except InvalidArgument as exc:
        fail(f"{type(exc).__name__}: {scrub(str(exc), [args.redis_url, inspect_default()])}")
        return EXIT_USAGE
    except TaskStoreError as exc:
        url = args.redis_url or inspect_default()
        where = f" (at {shown.url(url)}, key prefix {args.prefix})"
        fail(f"{type(exc).__name__}: {scrub(str(exc), [url])}{where if args.inspects else ''}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
