"""Python function calls per job in ``run_worker``: claim -> no-op handler -> complete.

``python benchmarks/worker_calls.py [--jobs 2000] [--concurrency 10] [--backend redis|memory]
[--sync-handler] [--top 25] [--no-profile] [--stats-out FILE]``

1. starts a throwaway ``redis-server`` (``taskstore_redis.testing.redis_server()``; the
   binary named by ``TASKSTORE_REDIS_SERVER``, else ``redis-server`` on the path), or
   uses ``InMemoryBackend`` with ``--backend memory``;
2. submits N no-op jobs (async store, from 64 concurrent coroutines), spread over 64
   owners (so over the store's shards);
3. runs ``run_worker`` (the async API) at concurrency C with a handler that returns
   True (async, or sync in a worker thread with ``--sync-handler``) until every job
   completed, under cProfile (``--no-profile``: not profiled, for the rate alone);
4. prints the Python function calls per job (cProfile's total calls, counted only
   while ``run_worker`` runs, divided by the jobs it completed), the top call sites by
   call count, and the jobs per second (with the profiler on unless ``--no-profile``).

The call count is the figure to compare: it barely depends on the machine or its
load (it moves by about 1 % from run to run, with how claims batch up). The rate
depends on both. cProfile sees the event loop's thread only: a sync handler's own
thread is not counted (the no-op handler does nothing there).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio

from taskstore_redis import SecurityConfig
from taskstore_redis.asyncio import GenericTaskStore, InMemoryBackend, Lease, run_worker
from taskstore_redis.testing import redis_server

QUEUE = "bench"
OWNERS = 64
LANES = 64


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--backend", choices=("redis", "memory"), default="redis")
    p.add_argument("--sync-handler", action="store_true")
    p.add_argument("--top", type=int, default=25, help="call sites to print (0: none)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--stats-out", metavar="FILE", help="save the profile (pstats) to FILE")
    return p.parse_args(argv)


async def _submit(store: GenericTaskStore, jobs: int) -> None:
    numbers = iter(range(jobs))

    async def lane() -> None:
        for n in numbers:
            await store.submit("tools/call", None, owner_id=f"owner-{n % OWNERS}", queue=QUEUE)

    async with anyio.create_task_group() as group:
        for _ in range(min(LANES, jobs)):
            group.start_soon(lane)


async def _work(
    store: GenericTaskStore, args: argparse.Namespace
) -> tuple[int, float, pstats.Stats | None]:
    """Run the worker until every job completed: (completed, seconds, profile)."""
    done = threading.Event()  # the worker checks it every 50 ms
    lock = threading.Lock()
    handled = 0

    def handler(lease: Lease) -> bool:
        nonlocal handled
        with lock:
            handled += 1
            if handled == args.jobs:
                done.set()
        return True  # a task's result is never None

    async def async_handler(lease: Lease) -> bool:
        return handler(lease)

    chosen: Any = handler if args.sync_handler else async_handler
    profile = None if args.no_profile else cProfile.Profile()
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    stats = await run_worker(
        store,
        chosen,
        queue=QUEUE,
        concurrency=args.concurrency,
        stop=done,
        handle_signals=False,
    )
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - started
    return stats.completed, seconds, None if profile is None else pstats.Stats(profile)


async def _bench(store: GenericTaskStore, args: argparse.Namespace) -> None:
    async with store:
        await _submit(store, args.jobs)
        completed, seconds, stats = await _work(store, args)
    if completed != args.jobs:
        raise SystemExit(f"the worker completed {completed} of {args.jobs} jobs")
    rate = completed / seconds
    print(
        f"backend={args.backend} jobs={completed} concurrency={args.concurrency} "
        f"handler={'sync' if args.sync_handler else 'async'}"
    )
    if stats is None:
        print(f"jobs/s (not profiled): {rate:,.0f}")
        return
    total: int = stats.total_calls  # type: ignore[attr-defined]
    print(f"Python calls per job: {total / completed:,.0f}")
    if args.stats_out:
        stats.dump_stats(args.stats_out)
    print(f"jobs/s (profiled): {rate:,.0f}")
    if args.top:
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("ncalls").print_stats(args.top)
        print(out.getvalue().split("\n\n", 1)[-1].rstrip())


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    security = SecurityConfig(max_tasks_per_owner=None)
    if args.backend == "memory":
        anyio.run(_bench, GenericTaskStore(InMemoryBackend(), security=security), args)
        return
    with redis_server() as server:
        anyio.run(_bench, GenericTaskStore.from_url(server.url, security=security), args)


if __name__ == "__main__":
    main(sys.argv[1:])
