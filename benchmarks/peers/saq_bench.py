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

import asyncio
import logging
import platform
import sys
from typing import Any

import redis
import redis.asyncio
import saq
from _program import (
    Tally,
    WorkerPool,
    contract_parser,
    delete_keys,
    new_record,
    run_contract,
    serve,
)
from saq import Queue, Worker
from saq.job import Status


async def noop(ctx: dict[str, Any]) -> None:
    """The job: does nothing."""


# ------------------------------------------------------------------ worker process
def _worker_main(
    index: int, slots: Any, ready: Any, stop: Any, url: str, name: str, c: int
) -> None:
    asyncio.run(_worker(Tally(slots, index), ready, stop, url, name, c))


async def _worker(tally: Tally, ready: Any, stop: Any, url: str, name: str, c: int) -> None:
    logging.getLogger("saq").setLevel(logging.ERROR)  # its shutdown warnings are expected

    async def claimed(ctx: dict[str, Any]) -> None:
        tally.claimed()

    async def finished(ctx: dict[str, Any]) -> None:
        job = ctx.get("job")
        if job is not None and job.status == Status.COMPLETE:
            tally.finished()
        elif job is not None and job.status == Status.FAILED:
            tally.failed()

    queue = Queue.from_url(url, name=name)
    await queue.connect()
    await queue.version()  # one round trip: the connection is up before the start signal
    worker = Worker(
        queue,
        functions=[noop],
        concurrency=c,
        before_process=claimed,
        after_process=finished,
    )
    await serve(tally, ready, stop, worker.start)
    await worker.stop()
    await queue.disconnect()


# ------------------------------------------------------------------ parent process
async def _enqueue(queue: Queue, jobs: int, batch: int) -> None:
    for i in range(0, jobs, batch):
        n = min(batch, jobs - i)
        added = await asyncio.gather(*(queue.enqueue("noop") for _ in range(n)))
        if any(job is None for job in added):
            raise RuntimeError("saq refused to enqueue a job")


async def main(argv: list[str]) -> int:
    args = contract_parser(__doc__.splitlines()[0], batch=True).parse_args(argv)
    admin = redis.asyncio.Redis.from_url(args.redis_url)
    info = await admin.info("server")
    record = new_record(
        "saq",
        args,
        {
            "saq": saq.__version__,
            "redis-py": redis.__version__,
            "python": platform.python_version(),
            "redis": info.get("redis_version"),
        },
        {
            "add": f"Queue.enqueue, batches of {args.batch} concurrent calls",
            "job_options": "saq defaults (ttl 600 s: finished jobs kept 10 minutes, retries 1,"
            " timeout 10 s, heartbeat off)",
            "worker": "saq defaults (dequeue_timeout 0, upkeep timers)",
            "handler": "async def noop(ctx): pass",
        },
    )
    queue = Queue.from_url(args.redis_url, name=args.prefix)

    async def add() -> None:
        await queue.connect()
        await _enqueue(queue, args.jobs, args.batch)

    async def process(deadline: float) -> None:
        pool = WorkerPool(args.processes, _worker, (args.redis_url, args.prefix, args.concurrency))

        async def drained() -> bool:
            """True once every job has finished and none is waiting, active or due for a retry.

            Counting completions alone is not enough: saq's sweep (run by a worker when it
            starts) can re-queue a job that another worker has just dequeued, so a job may
            complete twice.
            """
            if pool.finished() < args.jobs:
                return False
            async with admin.pipeline(transaction=False) as pipe:
                pipe.zcard(f"saq:{args.prefix}:incomplete")
                pipe.llen(f"saq:{args.prefix}:queued")
                pipe.llen(f"saq:{args.prefix}:active")
                return not any(await pipe.execute())

        await pool.run(drained, admin, record, args.jobs, deadline)

    async def cleanup() -> int:
        await queue.disconnect()
        return await delete_keys(admin, f"saq:{args.prefix}:*", f"saq:job:{args.prefix}:*")

    try:
        return await run_contract(args, record, add, process, cleanup)
    finally:
        await admin.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
