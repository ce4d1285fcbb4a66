"""saq side of the work-queue peer benchmark.

python saq_bench.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
    --concurrency 10 --prefix bench-ab12 [--batch 1000] [--timeout 300]

Runs in a scratch virtualenv that has saq (the runner, run.py, makes it); it is not part
of the project's dependencies.

1. enqueues N no-op jobs (saq has no bulk enqueue: batches of concurrent ``Queue.enqueue``
   calls, which saq itself throttles to its ``max_concurrent_ops``; the add rate);
2. starts P worker processes (spawn), one saq ``Worker`` each with the given concurrency,
   waits until every one is connected, then lets them all start at once;
3. the processing rate is N / (last completion - first claim), over all processes;
4. stops the workers, deletes the queue's keys, prints ONE JSON line on stdout (the
   contract at the top of run.py) and exits; 0 when the run completed.

Never runs longer than --timeout seconds: then it stops its workers, cleans up and prints
a line with "ok": false.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import platform
import sys
import time
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import redis
import redis.asyncio
import saq
from _program import contract_parser, positive
from saq import Queue, Worker
from saq.job import Status

# one slot per worker process: completed, first claim, last completion (time.time()), failed
_FIELDS = 4


async def noop(ctx: dict[str, Any]) -> None:
    """The job: does nothing."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = contract_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=positive, default=1000)
    return p.parse_args(argv)


# ------------------------------------------------------------------ worker process
def _worker_main(
    index: int,
    url: str,
    name: str,
    concurrency: int,
    slots: SynchronizedArray[float],
    ready: Barrier,
    stop: Event,
    timeout: float,
) -> None:
    asyncio.run(_worker(index, url, name, concurrency, slots, ready, stop, timeout))


async def _worker(
    index: int,
    url: str,
    name: str,
    concurrency: int,
    slots: SynchronizedArray[float],
    ready: Barrier,
    stop: Event,
    timeout: float,
) -> None:
    logging.getLogger("saq").setLevel(logging.ERROR)  # its shutdown warnings are expected
    base = index * _FIELDS
    raw = slots.get_obj()  # one writer per slot: no lock needed

    async def claimed(ctx: dict[str, Any]) -> None:
        if raw[base + 1] == 0.0:
            raw[base + 1] = time.time()

    async def finished(ctx: dict[str, Any]) -> None:
        job = ctx.get("job")
        if job is not None and job.status == Status.COMPLETE:
            raw[base] += 1
            raw[base + 2] = time.time()
        elif job is not None and job.status == Status.FAILED:
            raw[base + 3] += 1

    queue = Queue.from_url(url, name=name)
    await queue.connect()
    await queue.version()  # one round trip: the connection is up before the start signal
    worker = Worker(
        queue,
        functions=[noop],
        concurrency=concurrency,
        before_process=claimed,
        after_process=finished,
    )
    await asyncio.to_thread(ready.wait, timeout)
    task = asyncio.create_task(worker.start())
    await asyncio.to_thread(stop.wait, timeout)
    await worker.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()


# ------------------------------------------------------------------ parent process
async def _delete_keys(client: redis.asyncio.Redis, name: str) -> int:
    deleted = 0
    for pattern in (f"saq:{name}:*", f"saq:job:{name}:*"):
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    return deleted


async def _enqueue(queue: Queue, jobs: int, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, jobs, batch):
        n = min(batch, jobs - i)
        added = await asyncio.gather(*(queue.enqueue("noop") for _ in range(n)))
        if any(job is None for job in added):
            raise RuntimeError("saq refused to enqueue a job")
    return time.perf_counter() - start


async def _drained(
    admin: redis.asyncio.Redis, name: str, raw: Any, processes: int, jobs: int
) -> bool:
    """True once every job has finished and none is waiting, active or due for a retry.

    Counting completions alone is not enough: saq's sweep (run by a worker when it starts)
    can re-queue a job that another worker has just dequeued, so a job may complete twice.
    """
    finished = sum(raw[i * _FIELDS] + raw[i * _FIELDS + 3] for i in range(processes))
    if finished < jobs:
        return False
    async with admin.pipeline(transaction=False) as pipe:
        pipe.zcard(f"saq:{name}:incomplete")
        pipe.llen(f"saq:{name}:queued")
        pipe.llen(f"saq:{name}:active")
        return not any(await pipe.execute())


async def _process(
    args: argparse.Namespace,
    record: dict[str, Any],
    procs: list[Any],
    deadline: float,
    admin: redis.asyncio.Redis,
) -> None:
    ctx = mp.get_context("spawn")
    slots = ctx.Array("d", _FIELDS * args.processes)
    ready = ctx.Barrier(args.processes + 1)
    stop = ctx.Event()
    for i in range(args.processes):
        proc = ctx.Process(
            target=_worker_main,
            args=(i, args.redis_url, args.prefix, args.concurrency, slots, ready, stop, 600.0),
            daemon=True,
        )
        proc.start()
        procs.append(proc)
    try:
        await asyncio.to_thread(ready.wait, max(0.1, deadline - time.monotonic()))
        raw = slots.get_obj()
        while not await _drained(admin, args.prefix, raw, args.processes, args.jobs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {args.timeout} s")
            if any(not p.is_alive() for p in procs):
                raise RuntimeError("a worker process exited early")
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        ready.abort()  # frees a worker still waiting for the start signal
        stopping = time.monotonic() + 10  # then the rest are killed
        for proc in procs:
            await asyncio.to_thread(proc.join, max(0.0, stopping - time.monotonic()))
    raw = slots.get_obj()
    done = [int(raw[i * _FIELDS]) for i in range(args.processes)]
    firsts = [raw[i * _FIELDS + 1] for i in range(args.processes) if raw[i * _FIELDS + 1]]
    lasts = [raw[i * _FIELDS + 2] for i in range(args.processes) if raw[i * _FIELDS + 2]]
    record["completed"] = min(sum(done), args.jobs)
    record["failed"] = int(sum(raw[i * _FIELDS + 3] for i in range(args.processes)))
    record["redelivered"] = max(0, sum(done) + record["failed"] - args.jobs)
    record["per_process"] = done
    if firsts and lasts:
        record["process_seconds"] = max(lasts) - min(firsts)
        record["process_rate"] = sum(done) / record["process_seconds"]


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    admin = redis.asyncio.Redis.from_url(args.redis_url)
    info = await admin.info("server")
    record: dict[str, Any] = {
        "peer": "saq",
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
        "versions": {
            "saq": saq.__version__,
            "redis-py": redis.__version__,
            "python": platform.python_version(),
            "redis": info.get("redis_version"),
        },
        "settings": {
            "prefix": args.prefix,
            "add": f"Queue.enqueue, batches of {args.batch} concurrent calls",
            "job_options": "saq defaults (ttl 600 s: finished jobs kept 10 minutes, retries 1,"
            " timeout 10 s, heartbeat off)",
            "worker": "saq defaults (dequeue_timeout 0, upkeep timers)",
            "handler": "async def noop(ctx): pass",
        },
        "error": None,
    }
    procs: list[Any] = []
    queue = Queue.from_url(args.redis_url, name=args.prefix)
    try:
        await queue.connect()
        seconds = await asyncio.wait_for(
            _enqueue(queue, args.jobs, args.batch), max(0.1, deadline - time.monotonic())
        )
        record["add_seconds"] = seconds
        record["add_rate"] = args.jobs / seconds
        await _process(args, record, procs, deadline, admin)
        record["ok"] = record["completed"] == args.jobs and record["failed"] == 0
        if not record["ok"]:
            record["error"] = (
                f"completed {record['completed']} of {args.jobs}, failed {record['failed']}"
            )
    except TimeoutError:
        record["error"] = f"timed out after {args.timeout} s"
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        try:
            await queue.disconnect()
            record["settings"]["keys_deleted"] = await _delete_keys(admin, args.prefix)
        except Exception as exc:
            record["error"] = f"{record['error'] or ''}; cleanup failed: {exc}"
        await admin.aclose()
    sys.stdout.write(json.dumps(record) + "\n")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
