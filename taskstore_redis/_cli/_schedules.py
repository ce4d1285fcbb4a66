"""``schedules`` and ``unschedule``: the schedules of a key prefix, and deleting one."""

from __future__ import annotations

import argparse
from datetime import datetime

import msgspec
from rich.console import Console
from rich.table import Table

from .._core import shown
from .._core.errors import InvalidArgument
from .._core.schedules import ScheduleInfo
from ._exit import EXIT_OK
from ._inspect import _print_json, _store, cell


def spec_of(info: ScheduleInfo) -> str:
    """When a schedule fires, for people: ``cron 30 2 * * * (Europe/Berlin)`` or ``every 5 s``."""
    if info.cron is not None:
        return f"cron {info.cron} ({info.timezone})"
    every = info.every_ms or 0
    if every % 3_600_000 == 0:
        return f"every {every // 3_600_000} h"
    if every % 60_000 == 0:
        return f"every {every // 60_000} min"
    if every % 1000 == 0:
        return f"every {every // 1000} s"
    return f"every {every} ms"


def when(at: datetime | None) -> str:
    """A fire time for people (UTC, to the second), or ``-``."""
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis schedules``: every schedule (a table, or JSON with ``--json``)."""
    with _store(url, args) as store:
        found = store.schedules()
    if args.json:
        _print_json([msgspec.to_builtins(info) for info in found])
        return EXIT_OK
    if not found:
        console.print(f"no schedule under key prefix {args.prefix}", markup=False)
        return EXIT_OK
    table = Table(title=f"schedules under key prefix {args.prefix}")
    for heading in ("name", "owner", "queue", "method", "when"):
        table.add_column(heading, justify="left", overflow="fold")
    table.add_column("next fire (UTC)", justify="left", no_wrap=True)
    table.add_column("last task", justify="left", overflow="fold")
    for info in found:
        table.add_row(
            *(
                cell(value)
                for value in (
                    info.name,
                    info.owner_id,
                    info.queue,
                    info.request_method,
                    spec_of(info),
                    when(info.next_fire_at),
                    info.last_task_id or "-",
                )
            )
        )
    console.print(table, markup=False)
    return EXIT_OK


def check_unschedule(args: argparse.Namespace) -> None:
    """The NAME of ``unschedule``: InvalidArgument before any server is reached."""
    if not args.name:
        raise InvalidArgument("NAME must not be empty")


def unschedule(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis unschedule NAME``: delete a schedule (its tasks stay)."""
    with _store(url, args) as store:
        removed = store.unschedule(args.name)
    name = shown.printable(args.name)
    if removed:
        console.print(
            f"schedule '{name}' deleted under key prefix {args.prefix!r}; "
            "the tasks it submitted stay",
            markup=False,
        )
    else:
        console.print(f"no schedule '{name}' under key prefix {args.prefix!r}", markup=False)
    return EXIT_OK
