"""``pause``, ``resume``, ``limits`` and ``resubmit``: an operator's hand on the queues."""

from __future__ import annotations

import argparse

import msgspec
from rich.console import Console

from .._core import shown
from .._core.config import StoreConfig
from .._core.errors import InvalidArgument
from .._core.model import Limits
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


def check_limits(args: argparse.Namespace) -> None:
    """The options of ``limits``: InvalidArgument before any server is reached."""
    check_queue(args.queue)
    if args.group is not None:
        check_id(args.group, "--group")
    values = (args.max_concurrency, args.per_second, args.burst)
    if args.clear and any(value is not None for value in values):
        raise InvalidArgument("--clear takes no limit")
    if args.burst is not None and args.per_second is None:
        raise InvalidArgument("--burst needs a --per-second")


def limits(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """``taskstore-redis limits QUEUE``: show the queue's limits, or set them (``--group``)."""
    values = (args.max_concurrency, args.per_second, args.burst)
    with _store(url, args) as store:
        if args.clear or any(value is not None for value in values):
            store.set_limits(
                args.queue,
                group=args.group,
                max_concurrency=args.max_concurrency,
                per_second=args.per_second,
                burst=args.burst,
            )
        read = store.limits(args.queue)
    if args.json:
        _print_json(msgspec.to_builtins(read))
        return EXIT_OK
    console.print(
        f"queue '{shown.printable(args.queue)}': {described(read.limits)}",
        soft_wrap=True,
        markup=False,
    )
    for group, set_for in read.groups.items():
        console.print(
            f"  group '{shown.printable(group)}': {described(set_for)}",
            soft_wrap=True,
            markup=False,
        )
    return EXIT_OK


def described(set_for: Limits) -> str:
    """Limits for people: ``at most 3 at once, 50/s (burst 1)``, or ``no limit``."""
    parts = []
    if set_for.max_concurrency is not None:
        parts.append(f"at most {set_for.max_concurrency} at once")
    if set_for.per_second is not None:
        parts.append(f"{set_for.per_second:g}/s (burst {set_for.burst})")
    return ", ".join(parts) or "no limit"
