"""``get``, ``list`` and ``cleanup``: look at (and purge) the tasks on an existing server."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .._core import shown
from .._core.config import StoreConfig
from .._core.model import JSONValue, TaskRecord
from .._core.validation import check_id, resolve_limit
from .._sync._store import GenericTaskStore
from ._exit import EXIT_OK

WIDTH = 80
"""The human tables fit this many columns (fewer on a narrower terminal)."""


def _store(url: str | None, args: argparse.Namespace) -> GenericTaskStore:
    assert url is not None  # these commands always work on a server
    return GenericTaskStore.from_url(url, prefix=args.prefix)


def check_get(args: argparse.Namespace) -> None:
    """The options of ``get``: InvalidArgument before any server is reached."""
    check_id(args.task_id, "TASK_ID")
    check_id(args.owner, "--owner")


def check_list(args: argparse.Namespace) -> None:
    """The options of ``list``: InvalidArgument before any server is reached."""
    check_id(args.owner, "--owner")
    resolve_limit(args.limit, StoreConfig())
    if args.cursor is not None:
        check_id(args.cursor, "--cursor")


def json_text(value: object) -> str:
    r"""``value`` as one line of JSON that no terminal obeys.

    Every character that is not printable, inside a string, is written as its
    ``\uXXXX`` escape: JSON escapes C0 controls itself; DEL, C1 controls (``\x9b``
    starts a sequence on some terminals) and bidirectional overrides too.
    """
    text = json.dumps(value, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _json_escape(ch) for ch in text)


def _json_escape(ch: str) -> str:
    return json.dumps(ch)[1:-1] if ord(ch) > 0xFFFF else f"\\u{ord(ch):04x}"


def _print_json(value: object) -> None:
    sys.stdout.write(json_text(value) + "\n")


def cell(value: str) -> Text:
    """A table cell for people: ``value`` literally (no markup), its control characters escaped."""
    return Text(shown.printable(value))


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
        record = store.get(args.task_id, owner_id=args.owner)
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
        table.add_row(name, cell(value))
    console.print(table, width=_width(console), markup=False)
    return EXIT_OK


def list_tasks(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis list``: one page of an owner's tasks, as a table or as JSON."""
    with _store(url, args) as store:
        page = store.list(owner_id=args.owner, cursor=args.cursor, limit=args.limit)
    if args.json:
        tasks = [{**wire(record), "expired": record.is_expired()} for record in page.tasks]
        _print_json({"tasks": tasks, "nextCursor": page.next_cursor})
        return EXIT_OK
    if not page.tasks:
        what = "no more tasks" if args.cursor else "no tasks"
        console.print(
            f"{what} for owner '{shown.printable(args.owner)}' under key prefix {args.prefix!r}",
            markup=False,
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
        table.add_row(cell(task.task_id), status, cell(task.status_message or ""))
    console.print(table, width=_width(console), markup=False)
    counted = f"{len(page.tasks)} task(s), newest first"
    if page.next_cursor:
        counted += f"; next page: --cursor {shown.printable(page.next_cursor)}"
    console.print(counted, soft_wrap=True, markup=False)
    return EXIT_OK


def cleanup(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis cleanup``: purge the expired tasks of the key prefix."""
    with _store(url, args) as store:
        purged = store.cleanup_expired()
    console.print(f"purged {purged} expired task(s) under key prefix {args.prefix!r}", markup=False)
    return EXIT_OK
