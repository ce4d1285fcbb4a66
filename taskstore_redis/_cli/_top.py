"""``taskstore-redis top``: a live view of the queues, the workers' leases and recent failures.

Every refresh reads, per queue, ``queue_stats`` (one script per shard) and
``queue_leases`` (at most ``LEASES_PER_QUEUE`` leases per shard), then looks up
at most ``LOOKUPS_PER_REFRESH`` of the tasks that left the leased set since the
previous refresh: those found ``failed`` are the recent failures. So every
refresh is bounded, whatever the size of the queues, and writes nothing.

- Throughput is the change of the queue's stored ``completed`` + ``failed``
  counters (every worker's, wherever it runs) over the refreshes of the last
  minute, per minute; with ``--once`` two readings ``--interval`` apart.
- Workers are the ``worker_id`` of the leases (the ``worker`` command's is
  ``host:pid``); a worker seen earlier that holds nothing now stays listed as idle
  (for ``IDLE_KEPT_S``).
- A failure is seen when its task was leased at one refresh and failed by the
  next: a task claimed and failed between two refreshes is counted in the
  throughput, not listed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._core import shown
from .._core.errors import TaskNotFound, TaskStoreError
from .._core.model import LeaseInfo, QueueStats
from .._core.shown import age
from .._core.status import TaskStatus
from .._sync._store import GenericTaskStore
from ._exit import EXIT_INTERRUPTED, EXIT_OK
from ._inspect import _print_json, _store, cell

LEASES_PER_QUEUE = 100
"""Leases listed per queue and shard at each refresh."""
LOOKUPS_PER_REFRESH = 50
"""Tasks that left the leased set looked up per refresh, to find the failures."""
FAILURES_KEPT = 20
"""Recent failures shown (the newest)."""
SCHEDULES_SHOWN = 10
"""Schedules shown, soonest next fire first."""
WINDOW_S = 60.0
"""Throughput is measured over the refreshes of this last span."""
MESSAGE_WIDTH = 120
"""A failure's message is cut to this many characters."""
IDLE_KEPT_S = 600.0
"""A worker seen holding nothing for this long is no longer listed."""

Key = tuple[str, str]

pause = time.sleep
"""How ``top`` waits between readings."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the top command's options to its parser."""
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="time between refreshes (2); with --once, between its two readings",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="take two readings --interval apart, print one frame and stop",
    )
    parser.add_argument("--json", action="store_true", help="print each frame as one line of JSON")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be from 0.05 to 3600 seconds, got {text}")
    return value


@dataclass
class _Held:
    queue: str
    lease: LeaseInfo


@dataclass
class Watcher:
    """What ``top`` keeps between refreshes: counter history, leases seen, failures."""

    store: GenericTaskStore
    history: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)
    held: dict[Key, _Held] = field(default_factory=dict)
    failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FAILURES_KEPT))
    seen: dict[str, datetime] = field(default_factory=dict)
    """Every worker id seen holding a lease, and when it was last seen holding one."""

    def refresh(self) -> dict[str, Any]:
        """Read the store now; return the frame (plain JSON values)."""
        now = datetime.now(UTC)
        stats = [self.store.queue_stats(name) for name in self.store.queues()]
        leases = {
            one.queue: self.store.queue_leases(one.queue, limit=LEASES_PER_QUEUE) for one in stats
        }
        at = time.monotonic()
        self.history.append((at, {one.queue: one.completed + one.failed for one in stats}))
        while len(self.history) > 2 and at - self.history[1][0] >= WINDOW_S:
            self.history.popleft()
        held = {
            (lease.owner_id, lease.task_id): _Held(queue, lease)
            for queue, listed in leases.items()
            for lease in listed
        }
        self._find_failures(held, now)
        self.held = held
        for one in held.values():
            if one.lease.worker_id:
                self.seen[one.lease.worker_id] = now
        for worker, last in list(self.seen.items()):
            if (now - last).total_seconds() > IDLE_KEPT_S:
                del self.seen[worker]
        upcoming = sorted(self.store.schedules(), key=lambda info: info.next_fire_at)
        return {
            "at": now.isoformat(),
            "queues": [self._queue(one, len(leases[one.queue])) for one in stats],
            "workers": self._workers(now),
            "failures": list(reversed(self.failures)),
            "schedules": [
                {
                    "name": info.name,
                    "queue": info.queue,
                    "next_fire_at": info.next_fire_at.isoformat(),
                    "next_fire_in_ms": (info.next_fire_at - now).total_seconds() * 1000,
                    "last_fire_at": None
                    if info.last_fire_at is None
                    else info.last_fire_at.isoformat(),
                }
                for info in upcoming[:SCHEDULES_SHOWN]
            ],
        }

    def _queue(self, stats: QueueStats, listed: int) -> dict[str, Any]:
        first_at, first = self.history[0]
        last_at, last = self.history[-1]
        span = last_at - first_at
        rate = None
        if span > 0 and stats.queue in first:
            rate = max(0, last[stats.queue] - first[stats.queue]) / span * 60
        return {
            "queue": stats.queue,
            "paused": stats.paused,
            "ready": stats.ready,
            "delayed": stats.delayed,
            "leased": stats.leased,
            "leases_listed": listed,
            "oldest_ready_age_ms": stats.oldest_ready_age_ms,
            "completed": stats.completed,
            "failed": stats.failed,
            "throughput_per_min": None if rate is None else round(rate, 2),
            "throughput_window_s": round(span, 3) if rate is not None else None,
        }

    def _workers(self, now: datetime) -> list[dict[str, Any]]:
        by_worker: dict[str, list[_Held]] = {worker: [] for worker in self.seen}
        for one in self.held.values():
            by_worker.setdefault(one.lease.worker_id or "", []).append(one)
        workers = []
        for worker, held in sorted(by_worker.items()):
            held.sort(key=lambda one: one.lease.expires_at)
            workers.append(
                {
                    "worker_id": worker or None,
                    "leases": len(held),
                    "last_seen": self.seen[worker].isoformat() if worker in self.seen else None,
                    "tasks": [
                        {
                            "queue": one.queue,
                            "task_id": one.lease.task_id,
                            "owner_id": one.lease.owner_id,
                            "attempt": one.lease.attempt,
                            "expires_in_ms": round(
                                (one.lease.expires_at - now).total_seconds() * 1000
                            ),
                            "lost": one.lease.lost,
                        }
                        for one in held
                    ],
                }
            )
        return workers

    def _find_failures(self, held: dict[Key, _Held], now: datetime) -> None:
        gone = [key for key in self.held if key not in held][:LOOKUPS_PER_REFRESH]
        for owner_id, task_id in gone:
            was = self.held[(owner_id, task_id)]
            try:
                record = self.store.get(task_id, owner_id=owner_id)
            except TaskNotFound:
                continue  # deleted or purged meanwhile
            if record.task.status is not TaskStatus.FAILED:
                continue
            message = record.task.status_message or ""
            self.failures.append(
                {
                    "queue": was.queue,
                    "task_id": task_id,
                    "owner_id": owner_id,
                    "worker_id": was.lease.worker_id,
                    "attempt": was.lease.attempt,
                    "message": message[:MESSAGE_WIDTH],
                    "seen_at": now.isoformat(),
                }
            )


class _Stop(Exception):
    pass


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Show the queues until Ctrl-C (130) or SIGTERM (0); with ``--once``, one frame."""
    with _store(url, args) as store:
        watcher = Watcher(store)
        if args.once:
            watcher.refresh()
            pause(args.interval)
            _show(watcher.refresh(), args, console)
            return EXIT_OK
        try:
            with _stopped_by_sigterm():
                if args.json:
                    _stream_json(watcher, args.interval)
                else:
                    _live(watcher, args, console)
        except _Stop:
            return EXIT_OK
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return EXIT_OK  # pragma: no cover  (the loops end by a signal only)


def _show(frame: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    if args.json:
        _print_json(frame)
    else:
        console.print(render(frame, args.prefix))


def _stream_json(watcher: Watcher, interval: float) -> None:
    while True:
        _print_json(watcher.refresh())
        sys.stdout.flush()  # a line per refresh, as it comes, also into a pipe
        pause(interval)


def _live(watcher: Watcher, args: argparse.Namespace, console: Console) -> None:
    frame: dict[str, Any] | None = None
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            parts: list[Any] = []
            try:
                frame = watcher.refresh()
            except TaskStoreError as exc:  # the server away for a moment: say so, go on
                failed = f"refresh failed: {type(exc).__name__}: {exc}"
                parts.append(Text(shown.printable(failed), style="red"))
            if frame is not None:
                parts.insert(0, render(frame, args.prefix))
            live.update(Group(*parts), refresh=True)
            pause(args.interval)


def render(frame: dict[str, Any], prefix: str) -> Group:
    """The frame for people: a queues table, a workers table, the recent failures."""
    at = frame["at"][11:19]
    header = Text(f"taskstore-redis top  key prefix {prefix}  {at} UTC  (Ctrl-C quits)")
    queues = Table(title="queues", title_justify="left")
    for heading in ("queue", "ready", "delayed", "leased", "oldest waiting", "done/min"):
        queues.add_column(heading, justify="left" if heading == "queue" else "right")
    for one in frame["queues"]:
        rate = one["throughput_per_min"]
        queues.add_row(
            Text(shown.printable(one["queue"]) + (" (paused)" if one["paused"] else "")),
            str(one["ready"]),
            str(one["delayed"]),
            str(one["leased"]),
            age(one["oldest_ready_age_ms"]),
            "-" if rate is None else f"{rate:.1f}",
        )
    partial = [one for one in frame["queues"] if one["leases_listed"] < one["leased"]]
    caption = "; ".join(
        f"{shown.printable(one['queue'])}: {one['leases_listed']} of {one['leased']} leases listed"
        for one in partial
    )
    workers = Table(
        title="workers", title_justify="left", caption=Text(caption) if caption else None
    )
    for heading in ("worker", "leases", "tasks (queue/task, attempt, lease left)"):
        workers.add_column(heading, justify="right" if heading == "leases" else "left")
    for one in frame["workers"]:
        tasks = ", ".join(
            f"{shown.printable(task['queue'])}/{shown.printable(task['task_id'])} "
            f"#{task['attempt']} "
            f"{'lost' if task['lost'] else age(max(0, task['expires_in_ms']))}"
            for task in one["tasks"][:3]
        )
        if len(one["tasks"]) > 3:
            tasks += f", +{len(one['tasks']) - 3} more"
        workers.add_row(
            cell(one["worker_id"] or "(no id)"), str(one["leases"]), Text(tasks or "idle")
        )
    failures = Table(title="recent failures", title_justify="left")
    for heading in ("seen", "queue", "task", "worker", "attempt", "message"):
        failures.add_column(heading)
    for one in frame["failures"]:
        failures.add_row(
            one["seen_at"][11:19],
            cell(one["queue"]),
            cell(one["task_id"]),
            cell(one["worker_id"] or ""),
            str(one["attempt"]),
            cell(one["message"]),
        )
    fires = Table(title="next fires", title_justify="left")
    for heading in ("schedule", "queue", "next fire (UTC)", "in", "last fire (UTC)"):
        fires.add_column(heading, justify="right" if heading == "in" else "left")
    for one in frame.get("schedules", []):
        fires.add_row(
            cell(one["name"]),
            cell(one["queue"]),
            one["next_fire_at"][:19].replace("T", " "),
            age(max(0.0, one["next_fire_in_ms"])),
            "-" if one["last_fire_at"] is None else one["last_fire_at"][:19].replace("T", " "),
        )
    return Group(header, queues, fires, workers, failures)


__all__ = ["Watcher", "add_arguments", "render", "run"]
