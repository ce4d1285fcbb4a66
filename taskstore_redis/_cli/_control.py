"""``pause``, ``resume`` and ``resubmit``: an operator's hand on the queues."""

from __future__ import annotations

import argparse

from rich.console import Console

from .._core import shown
from .._core.config import StoreConfig
from .._core.validation import check_delay, check_id, check_queue
from ._exit import EXIT_OK
from ._inspect import _print_json, _store, wire


def check_queue_name(args: argparse.Namespace) -> None:
    """The QUEUE of ``pause`` and ``resume``: InvalidArgument before any server is reached."""
    check_queue(args.queue)


def check_resubmit(args: argparse.Namespace) -> None:
    """The options of ``resubmit``: InvalidArgument before any server is reached."""
    check_id(args.task_id, "TASK_ID")
    check_id(args.owner, "--owner")
    check_delay(args.delay_ms, StoreConfig())


def pause(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis pause QUEUE``: workers lease nothing from it until ``resume``."""
    with _store(url, args) as store:
        store.pause_queue(args.queue)
    console.print(
        f"queue '{shown.printable(args.queue)}' paused under key prefix {args.prefix!r}: "
        "workers lease none of its tasks; leases held go on",
        markup=False,
    )
    return EXIT_OK


def resume(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis resume QUEUE``: its workers are told and claim again."""
    with _store(url, args) as store:
        store.resume_queue(args.queue)
    console.print(
        f"queue '{shown.printable(args.queue)}' resumed under key prefix {args.prefix!r}",
        markup=False,
    )
    return EXIT_OK


def resubmit(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis resubmit TASK --owner O``: a failed or cancelled task, as a new task."""
    with _store(url, args) as store:
        record = store.resubmit(args.task_id, owner_id=args.owner, delay_ms=args.delay_ms)
    if args.json:
        _print_json(wire(record))
        return EXIT_OK
    job = record.job
    queue = job.queue if job is not None else ""
    console.print(
        f"resubmitted as {record.task.task_id} on queue '{shown.printable(queue)}' "
        f"(from {shown.printable(args.task_id)})",
        soft_wrap=True,
        markup=False,
    )
    return EXIT_OK
