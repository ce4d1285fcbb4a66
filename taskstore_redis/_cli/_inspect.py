"""``get``, ``list`` and ``cleanup``: look at (and purge) the tasks on an existing server."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Column, Table

from .._core.model import JSONValue, TaskRecord
from .._sync._store import GenericTaskStore
from ._exit import EXIT_OK

WIDTH = 80
"""The human tables fit this many columns (fewer on a narrower terminal)."""


def _store(url: str | None, args: argparse.Namespace) -> GenericTaskStore:
    assert url is not None  # these commands always work on a server
    return GenericTaskStore.from_url(url, prefix=args.prefix)


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def _compact(value: JSONValue) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _width(console: Console) -> int:
    return min(console.width, WIDTH)


def wire(record: TaskRecord) -> dict[str, JSONValue]:
    """A task as JSON: the MCP wire task, its variables as ``_meta``, and its result."""
    task = record.to_wire_task_with_variables()
    task["result"] = record.result
    return task


def get(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis get``: one task, as a table or as JSON."""
    with _store(url, args) as store:
        record = store.get(args.task_id, args.owner)
    if args.json:
        _print_json(wire(record))
        return EXIT_OK
    task = record.task
    table = Table(
        Column(style="bold", no_wrap=True), Column(overflow="fold"), show_header=False, box=None
    )
    expires = record.expires_at.isoformat() if record.expires_at else "never"
    rows = [
        ("task id", task.task_id),
        ("owner", record.owner_id),
        ("status", task.status.value + (" (expired)" if record.is_expired() else "")),
        ("message", task.status_message or ""),
        ("method", record.request_method),
        ("created", task.created_at),
        ("updated", task.last_updated_at),
        ("ttl", "none" if task.ttl is None else f"{task.ttl} ms, expires {expires}"),
        ("poll every", f"{task.poll_interval} ms"),
        ("variables", _compact(record.variables)),
        ("result", _compact(record.result)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table, width=_width(console), markup=False)
    return EXIT_OK


def list_tasks(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis list``: one page of an owner's tasks, as a table or as JSON."""
    with _store(url, args) as store:
        page = store.list(args.owner, cursor=args.cursor, limit=args.limit)
    if args.json:
        tasks = [{**wire(record), "expired": record.is_expired()} for record in page.tasks]
        _print_json({"tasks": tasks, "nextCursor": page.next_cursor})
        return EXIT_OK
    if not page.tasks:
        what = "no more tasks" if args.cursor else "no tasks"
        console.print(
            f"{what} for owner {args.owner!r} under key prefix {args.prefix!r}", markup=False
        )
        return EXIT_OK
    table = Table(
        Column("task id", no_wrap=True, min_width=36),  # whole, to be copied into `get`
        Column("status", overflow="fold", min_width=14),
        Column("message", overflow="fold"),
        box=None,
    )
    for record in page.tasks:
        task = record.task
        status = task.status.value + (" (expired)" if record.is_expired() else "")
        table.add_row(task.task_id, status, task.status_message or "")
    console.print(table, width=_width(console), markup=False)
    counted = f"{len(page.tasks)} task(s), newest first"
    if page.next_cursor:
        counted += f"; next page: --cursor {page.next_cursor}"
    console.print(counted, soft_wrap=True, markup=False)
    return EXIT_OK


def cleanup(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis cleanup``: purge the expired tasks of the key prefix."""
    with _store(url, args) as store:
        purged = store.cleanup_expired()
    console.print(f"purged {purged} expired task(s) under key prefix {args.prefix!r}", markup=False)
    return EXIT_OK
