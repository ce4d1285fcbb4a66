"""What every peer program shares (stdlib only: each runs in its own environment).

A peer program is run as a script, so this folder is on its path: ``from _program
import contract_parser``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _prefix(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        raise argparse.ArgumentTypeError("letters, digits, _ . - only")
    return text


def contract_parser(description: str, *, batch: bool = False) -> argparse.ArgumentParser:
    """A parser with the options the runner passes to every peer (see run.py).

    ``batch``: also ``--batch`` (jobs per add call or pipeline, default 1,000).
    """
    p = argparse.ArgumentParser(description=description)
    if batch:
        p.add_argument("--batch", type=positive, default=1000)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--jobs", type=positive, default=20_000)
    p.add_argument("--processes", type=positive, default=1)
    p.add_argument("--concurrency", type=positive, default=10)
    p.add_argument("--prefix", type=_prefix, required=True)
    p.add_argument("--timeout", type=positive, default=300)
    return p


def redis_cpu_seconds(info: dict[str, object]) -> float:
    """The server's CPU time so far (user + system) from ``INFO cpu``'s reply."""
    return float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"]))


# ------------------------------------------------------------- worker processes
FIELDS = 5
"""One slot per worker process: finished, first claim, last finish (time.time()), failed,
CPU seconds of the process between the start signal and the stop."""


class Tally:
    """A worker process's side of its slot (one writer per slot: no lock needed)."""

    def __init__(self, slots: Any, index: int) -> None:
        self.raw = slots.get_obj()
        self.index = index
        self.base = index * FIELDS
        self.cpu_at_start = 0.0

    def started(self) -> None:
        """The start signal came: the process's CPU time counts from here."""
        self.cpu_at_start = time.process_time()

    def stopped(self) -> None:
        """The stop signal came: the CPU time up to here is the process's share."""
        self.raw[self.base + 4] = time.process_time() - self.cpu_at_start

    def claimed(self) -> None:
        if self.raw[self.base + 1] == 0.0:
            self.raw[self.base + 1] = time.time()

    def finished(self) -> None:
        self.raw[self.base] += 1
        self.raw[self.base + 2] = time.time()

    def failed(self) -> None:
        self.raw[self.base + 3] += 1


Work = Callable[..., Awaitable[None]]
"""What a worker process runs: ``work(tally, ready, stop, *args)``."""


TALLY: Tally | None = None
"""The slot of this worker process (None in a parent), for ``noop``."""


def _spawned(work: Work, index: int, slots: Any, ready: Any, stop: Any, *args: Any) -> None:
    global TALLY
    TALLY = Tally(slots, index)
    asyncio.run(work(TALLY, ready, stop, *args))


async def noop() -> None:
    """The task of a peer whose worker has no hooks: does nothing but note its run.

    It counts as the claim and the finish; such a peer's window ends when the parent sees
    the queue drained (``WorkerPool.run(..., ends_when_seen=True)``).
    """
    if TALLY is not None:
        TALLY.claimed()
        TALLY.finished()


async def serve(tally: Tally, ready: Any, stop: Any, run: Callable[[], Awaitable[Any]]) -> None:
    """Wait for the start signal, run ``run()`` until the stop, then cancel it.

    For a worker whose library runs until cancelled; its CPU time is counted in between.
    """
    await asyncio.to_thread(ready.wait, 600)
    tally.started()
    task = asyncio.ensure_future(run())
    await asyncio.to_thread(stop.wait)
    tally.stopped()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class WorkerPool:
    """P spawned worker processes released together and stopped together.

    ``work(tally, ready, stop, *args)`` (a coroutine function of the program's module) runs
    in each: it connects, waits at ``ready`` (the barrier), calls ``Tally.started``, works
    until ``stop`` is set, calls ``Tally.stopped`` and shuts down (``serve`` does the
    middle part for a worker that runs until cancelled).
    """

    def __init__(self, processes: int, work: Work, args: tuple[Any, ...]) -> None:
        ctx = mp.get_context("spawn")
        self.processes = processes
        self.slots = ctx.Array("d", FIELDS * processes)
        self.ready = ctx.Barrier(processes + 1)
        self.stop = ctx.Event()
        self.procs = [
            ctx.Process(
                target=_spawned,
                args=(work, i, self.slots, self.ready, self.stop, *args),
                daemon=True,
            )
            for i in range(processes)
        ]
        for proc in self.procs:
            proc.start()

    def column(self, field: int) -> list[float]:
        raw = self.slots.get_obj()
        return [raw[i * FIELDS + field] for i in range(self.processes)]

    def finished(self) -> int:
        """Jobs finished (completed or failed) so far, over all processes."""
        return int(sum(self.column(0)) + sum(self.column(3)))

    async def run(
        self,
        drained: Callable[[], Awaitable[bool]],
        admin: Any,
        record: dict[str, Any],
        jobs: int,
        deadline: float,
        *,
        ends_when_seen: bool = False,
    ) -> None:
        """Release the workers, wait until ``drained()``, stop them; fill ``record``.

        ``admin`` (a redis-py asyncio client) reads the server's CPU time at the release
        and when ``drained()`` is first seen true.

        ``ends_when_seen``: the processing window ends when ``drained()`` is first seen
        true (polled every 20 ms), for a peer whose workers cannot tell when a job's
        completion is written; otherwise at the last ``Tally.finished`` of any process.
        """
        cpu_before: float | None = None
        cpu_after: float | None = None
        seen = 0.0
        try:
            await asyncio.to_thread(self.ready.wait, max(0.1, deadline - time.monotonic()))
            cpu_before = redis_cpu_seconds(await admin.info("cpu"))
            while not await drained():
                if time.monotonic() > deadline:
                    raise TimeoutError
                if any(not p.is_alive() for p in self.procs):
                    raise RuntimeError("a worker process exited early")
                await asyncio.sleep(0.02)
            seen = time.time()
            cpu_after = redis_cpu_seconds(await admin.info("cpu"))
        finally:
            self.stop.set()
            self.ready.abort()  # frees a worker still waiting for the start signal
            stopping = time.monotonic() + 10  # then the rest are killed
            for proc in self.procs:
                await asyncio.to_thread(proc.join, max(0.0, stopping - time.monotonic()))
            self.kill()
        done = [int(n) for n in self.column(0)]
        firsts = [t for t in self.column(1) if t]
        lasts = [seen] if ends_when_seen and seen else [t for t in self.column(2) if t]
        record["completed"] = min(sum(done), jobs)
        record["failed"] = int(sum(self.column(3)))
        record["redelivered"] = max(0, sum(done) + record["failed"] - jobs)
        record["per_process"] = done
        record["worker_cpu_seconds"] = sum(self.column(4))
        if cpu_before is not None and cpu_after is not None:
            record["redis_cpu_seconds"] = cpu_after - cpu_before
        if firsts and lasts:
            record["process_seconds"] = max(lasts) - min(firsts)
            record["process_rate"] = sum(done) / record["process_seconds"]

    def kill(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()


# --------------------------------------------------------------- the parent's side
def new_record(
    peer: str, args: argparse.Namespace, versions: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """The contract's record before the run: nothing measured yet."""
    return {
        "peer": peer,
        "ok": False,
        "jobs": args.jobs,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "add_seconds": None,
        "add_rate": None,
        "process_seconds": None,
        "process_rate": None,
        "completed": 0,
        "failed": 0,
        "worker_cpu_seconds": None,
        "redis_cpu_seconds": None,
        "versions": versions,
        "settings": {"prefix": args.prefix, **settings},
        "error": None,
    }


async def run_contract(
    args: argparse.Namespace,
    record: dict[str, Any],
    add: Callable[[], Awaitable[None]],
    process: Callable[[float], Awaitable[None]],
    cleanup: Callable[[], Awaitable[int]],
) -> int:
    """Add, process (given the deadline), clean up; print the record; the exit status."""
    deadline = time.monotonic() + args.timeout
    try:
        start = time.perf_counter()
        await asyncio.wait_for(add(), max(0.1, deadline - time.monotonic()))
        record["add_seconds"] = time.perf_counter() - start
        record["add_rate"] = args.jobs / record["add_seconds"]
        await process(deadline)
        record["ok"] = record["completed"] == args.jobs and record["failed"] == 0
        if not record["ok"]:
            record["error"] = (
                f"completed {record['completed']} of {args.jobs}, failed {record['failed']}"
            )
    except TimeoutError:
        record["error"] = f"timed out after {args.timeout} s"
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        try:
            record["settings"]["keys_deleted"] = await cleanup()
        except Exception as exc:
            record["error"] = f"{record['error'] or ''}; cleanup failed: {exc}"
    sys.stdout.write(json.dumps(record) + "\n")
    return 0 if record["ok"] else 1


async def delete_keys(client: Any, *patterns: str) -> int:
    """Unlink every key matching the patterns (a redis-py asyncio client); the count."""
    deleted = 0
    for pattern in patterns:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    return deleted
