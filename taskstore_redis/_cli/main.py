"""The ``taskstore-redis`` command (also ``python -m taskstore_redis``).

Every subcommand takes ``--redis-url``; without it, it starts a throwaway Redis
(a ``redis-server`` binary on PATH, else Docker) that lives as long as the
command. ``--backend memory`` runs on the in-memory backend in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import redis
import redis.exceptions
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .. import GenericTaskStore, InMemoryBackend, TaskStoreError, __version__
from .._redis.scripts import ALL_SCRIPTS
from ..testing import REDIS_URL_ENV, RedisUnavailable, redis_url_for_tests

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2
EXIT_INTERRUPTED = 130


class _NoRedis(Exception):
    """No Redis given and none could be started."""


@contextmanager
def _redis_url(args: argparse.Namespace, console: Console) -> Iterator[str | None]:
    """Yield the Redis URL to use, or None for the in-memory backend."""
    if args.backend == "memory":
        yield None
        return
    if args.redis_url:
        yield args.redis_url
        return
    try:
        with redis_url_for_tests() as url:
            console.print(f"[dim]using a throwaway Redis at {escape(url)}[/dim]")
            yield url
    except RedisUnavailable as exc:
        raise _NoRedis(str(exc)) from exc


def _store(url: str | None, args: argparse.Namespace) -> GenericTaskStore:
    if url is None:
        return GenericTaskStore(InMemoryBackend())
    return GenericTaskStore.from_url(url, prefix=args.prefix)


def _cmd_get(args: argparse.Namespace, url: str | None, console: Console) -> int:
    with _store(url, args) as store:
        record = store.get(args.task_id, args.owner)
        wire = record.to_wire_task_with_variables()
        wire["result"] = record.result
        console.print_json(json.dumps(wire))
    return EXIT_OK


def _cmd_list(args: argparse.Namespace, url: str | None, console: Console) -> int:
    with _store(url, args) as store:
        page = store.list(args.owner, cursor=args.cursor, limit=args.limit)
    table = Table(
        Column("task id", no_wrap=True, min_width=36),  # whole, to be copied into `get`
        Column("status", no_wrap=True, min_width=14),
        Column("message", overflow="fold"),
        Column("created", overflow="fold"),
        "expired",
    )
    for record in page.tasks:
        task = record.task
        table.add_row(
            escape(task.task_id),
            task.status.value,
            escape(task.status_message or ""),
            task.created_at,
            "yes" if record.is_expired() else "",
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"next page: --cursor {escape(page.next_cursor)}", soft_wrap=True)
    return EXIT_OK


def _cmd_cleanup(args: argparse.Namespace, url: str | None, console: Console) -> int:
    with _store(url, args) as store:
        purged = store.cleanup_expired()
    console.print(f"purged {purged} expired task(s)")
    return EXIT_OK


_DOCTOR_COMMANDS = [
    ["EVALSHA", "0" * 40, "1", "{PREFIX:0}:t:o:t"],
    ["SCRIPT", "LOAD", "return 1"],
    ["HMGET", "{PREFIX:0}:t:o:t", "v"],
    ["INFO", "cluster"],
]


def _cmd_doctor(args: argparse.Namespace, url: str | None, console: Console) -> int:
    if url is None:
        console.print("in-memory backend: nothing to check")
        return EXIT_OK
    healthy = True
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        info = client.info("server")
        cluster = bool(client.info("cluster").get("cluster_enabled"))
        version = str(info.get("redis_version", "?"))
        console.print(f"server: Redis {version}, {'cluster' if cluster else 'standalone'}")
        if tuple(int(part) for part in version.split(".")[:2]) < (7, 0):
            console.print("[red]needs Redis >= 7.0 (script flags, ZRANGE BYLEX REV)[/red]")
            healthy = False
        for script in ALL_SCRIPTS:
            loaded = client.script_load(script.source)
            ok = loaded == script.sha
            healthy &= ok
            console.print(f"script {script.name}: {'loadable' if ok else 'SHA mismatch'}")
        whoami = client.acl_whoami()
        user = whoami.decode() if isinstance(whoami, bytes) else str(whoami)
        for command in _DOCTOR_COMMANDS:
            words = [word.replace("PREFIX", args.prefix) for word in command]
            try:
                verdict = client.acl_dryrun(user, *words)
            except redis.exceptions.ResponseError as exc:
                verdict = str(exc)
            allowed = verdict in ("OK", b"OK", True)
            healthy &= allowed
            if isinstance(verdict, bytes):
                verdict = verdict.decode("utf-8", "replace")
            shown = "allowed" if allowed else escape(str(verdict))
            console.print(f"ACL {escape(user)} {' '.join(words[:2])}: {shown}")
        samples = []
        for _ in range(20):
            start = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - start) * 1000)
        console.print(f"round trip: p50 {statistics.median(samples):.3f} ms over 20 PINGs")
    except (redis.exceptions.RedisError, OSError) as exc:
        console.print(f"[red]cannot use {escape(f'{url}: {exc}')}[/red]")
        return EXIT_UNAVAILABLE
    finally:
        client.close()
    console.print("[green]healthy[/green]" if healthy else "[red]problems found[/red]")
    return EXIT_OK if healthy else EXIT_FAILED


Runner = Callable[[argparse.Namespace, "str | None", Console], int]


def _parser() -> argparse.ArgumentParser:
    from . import bench as _bench
    from . import demo as _demo

    parser = argparse.ArgumentParser(
        prog="taskstore-redis", description="A Redis-native store for long-running tasks."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        default=os.environ.get(REDIS_URL_ENV),
        help=f"Redis or Redis Cluster URL (default: ${REDIS_URL_ENV}, else a throwaway server)",
    )
    common.add_argument(
        "--backend",
        choices=["redis", "memory"],
        default="redis",
        help="memory: single process, no Redis needed",
    )
    common.add_argument("--prefix", default="taskstore", help="key prefix (default: taskstore)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", parents=[common], help="worker processes share a store")
    _demo.add_arguments(demo)
    demo.set_defaults(run=_demo.run)

    bench = commands.add_parser("bench", parents=[common], help="benchmarks against raw Redis")
    _bench.add_arguments(bench)
    bench.set_defaults(run=_bench.run)

    get = commands.add_parser("get", parents=[common], help="show one task")
    get.add_argument("task_id")
    get.add_argument("--owner", required=True)
    get.set_defaults(run=_cmd_get)

    listing = commands.add_parser("list", parents=[common], help="list an owner's tasks")
    listing.add_argument("--owner", required=True)
    listing.add_argument("--limit", type=int, default=None)
    listing.add_argument("--cursor", default=None)
    listing.set_defaults(run=_cmd_list)

    cleanup = commands.add_parser("cleanup", parents=[common], help="purge expired tasks")
    cleanup.set_defaults(run=_cmd_cleanup)

    doctor = commands.add_parser("doctor", parents=[common], help="check a Redis for the store")
    doctor.set_defaults(run=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    console = Console(emoji=False)  # ":o:" in a key name or a message stays as it is
    run: Runner = args.run
    try:
        with _redis_url(args, console) as url:
            return run(args, url, console)
    except _NoRedis as exc:
        console.print(
            f"[red]no Redis: {escape(str(exc))}[/red]"
            " — or run with --backend memory (single process)",
            soft_wrap=True,
        )
        return EXIT_UNAVAILABLE
    except TaskStoreError as exc:
        console.print(f"[red]{type(exc).__name__}: {escape(str(exc))}[/red]")
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
