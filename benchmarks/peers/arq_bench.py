"""arq side of the work-queue peer benchmark.

python arq_bench.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
    --concurrency 10 --prefix bench-ab12 [--batch 1000] [--timeout 300]

Runs in a scratch virtualenv that has arq (the runner, run.py, makes it); it is not part
of the project's dependencies. The queue is named after the prefix and every job id starts
with it, so every key arq writes holds it (``<prefix>``, ``arq:job:<prefix>-...``,
``arq:result:<prefix>-...``, ``<prefix>:health-check``).

1. enqueues N no-op jobs (arq has no bulk enqueue: batches of ``--batch`` concurrent
   ``ArqRedis.enqueue_job`` calls; the add rate);
2. starts P worker processes (spawn), one arq ``Worker(max_jobs=C)`` each, waits until
   every one is connected, then lets them all start at once;
3. the processing rate is N / (last completion - first claim), over all processes: the
   claim is arq's ``on_job_start`` hook, the completion its ``after_job_end`` hook (called
   once the result is recorded);
4. stops the workers, deletes the queue's keys, prints ONE JSON line on stdout (the
   contract at the top of run.py) and exits; 0 when the run completed.
"""

from __future__ import annotations

import asyncio
import platform
import sys
from typing import Any

import arq
import redis
import redis.asyncio
from _program import (
    Tally,
    WorkerPool,
    contract_parser,
    delete_keys,
    new_record,
    run_contract,
    serve,
)
from arq import Worker, create_pool
from arq.connections import RedisSettings


async def noop(ctx: dict[str, Any]) -> None:
    """The job: does nothing."""


# ------------------------------------------------------------------ worker process
async def _worker(tally: Tally, ready: Any, stop: Any, url: str, name: str, c: int) -> None:
    async def claimed(ctx: dict[str, Any]) -> None:
        tally.claimed()

    async def finished(ctx: dict[str, Any]) -> None:
        tally.finished()

    pool = await create_pool(RedisSettings.from_dsn(url))
    worker = Worker(
        functions=[noop],
        queue_name=name,
        redis_pool=pool,
        max_jobs=c,
        on_job_start=claimed,
        after_job_end=finished,
    )
    await pool.ping()  # connected before the start signal
    await serve(tally, ready, stop, worker.async_run)
    for _ in range(worker.jobs_failed):  # counted as finished too: the run is not ok
        tally.failed()
    await worker.close()


# ------------------------------------------------------------------ parent process
async def main(argv: list[str]) -> int:
    args = contract_parser(__doc__.splitlines()[0], batch=True).parse_args(argv)
    admin = redis.asyncio.Redis.from_url(args.redis_url)
    info = await admin.info("server")
    record = new_record(
        "arq",
        args,
        {
            "arq": arq.__version__,
            "redis-py": redis.__version__,
            "python": platform.python_version(),
            "redis": info.get("redis_version"),
        },
        {
            "add": f"ArqRedis.enqueue_job, batches of {args.batch} concurrent calls",
            "worker": "Worker(max_jobs=C), arq's defaults (poll_delay 0.5 s, "
            "queue_read_limit max(5 C, 100))",
            "job_options": "arq's defaults (keep_result 3600 s: results kept an hour, "
            "max_tries 5, job_timeout 300 s)",
            "handler": "async def noop(ctx): pass",
        },
    )

    async def add() -> None:
        client = await create_pool(RedisSettings.from_dsn(args.redis_url))
        try:
            for start in range(0, args.jobs, args.batch):
                n = min(args.batch, args.jobs - start)
                added = await asyncio.gather(
                    *(
                        client.enqueue_job(
                            "noop", _job_id=f"{args.prefix}-{start + i}", _queue_name=args.prefix
                        )
                        for i in range(n)
                    )
                )
                if any(job is None for job in added):
                    raise RuntimeError("arq refused to enqueue a job")
        finally:
            await client.aclose()

    async def process(deadline: float) -> None:
        pool = WorkerPool(args.processes, _worker, (args.redis_url, args.prefix, args.concurrency))

        async def drained() -> bool:
            return pool.finished() >= args.jobs and not await admin.zcard(args.prefix)

        await pool.run(drained, admin, record, args.jobs, deadline)

    async def cleanup() -> int:
        return await delete_keys(admin, f"*{args.prefix}*")

    try:
        return await run_contract(args, record, add, process, cleanup)
    finally:
        await admin.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
