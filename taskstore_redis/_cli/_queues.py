"""``taskstore-redis queues``: every queue of a key prefix, where its tasks stand, its limits."""

from __future__ import annotations

import argparse

import msgspec
from rich.console import Console
from rich.table import Table

from .._core.model import Limits, QueueStats
from .._core.shown import age
from ._control import described
from ._exit import EXIT_OK
from ._inspect import _print_json, _store, cell

COLUMNS = (
    ("queue", "queue"),
    ("ready", "ready"),
    ("delayed", "delayed"),
    ("leased", "leased"),
    ("oldest waiting", "oldest_ready_age_ms"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("recovered", "recovered"),
    ("given up", "given_up"),
    ("state", "paused"),
)
"""The table's columns: heading, QueueStats field."""


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Print every queue's numbers (a table, or JSON with ``--json``); return the exit status."""
    with _store(url, args) as store:
        names = store.queues()
        stats = [store.queue_stats(name) for name in names]
        limits = [store.limits(name) for name in names]
    if args.json:
        _print_json(
            [
                {**msgspec.to_builtins(one), "limits": msgspec.to_builtins(set_for)}
                for one, set_for in zip(stats, limits, strict=True)
            ]
        )
        return EXIT_OK
    if not stats:
        console.print(f"no queue under key prefix {args.prefix}", markup=False)
        return EXIT_OK
    table = Table(title=f"queues under key prefix {args.prefix}")
    for heading, _ in COLUMNS:
        table.add_column(heading, justify="left" if heading == "queue" else "right")
    table.add_column("limits", justify="left")
    for one, set_for in zip(stats, limits, strict=True):
        held = described(set_for.limits) if set_for.limits != Limits() else "-"
        if set_for.groups:
            held += f" (+{len(set_for.groups)} group(s))"
        table.add_row(*(cell(_cell(one, field)) for _, field in COLUMNS), cell(held))
    console.print(table, markup=False)
    return EXIT_OK


def _cell(stats: QueueStats, field: str) -> str:
    value = getattr(stats, field)
    if field == "oldest_ready_age_ms":
        return age(value)
    if field == "paused":
        return "paused" if value else "running"
    return str(value)
