"""Docket (pydocket) side of the work-queue peer benchmark.

python docket_bench.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
    --concurrency 10 --prefix bench-ab12 [--batch 1000] [--timeout 300]

Runs in a scratch virtualenv that has pydocket (the runner, run.py, makes it); it is not
part of the project's dependencies. The docket is named after the prefix, so every key
it writes starts with it.

1. adds N no-op tasks with ``Docket.add_many`` (Docket's batch API: pipelined chunks of
   ``--batch`` calls built with ``Docket.call``; the add rate);
2. starts P worker processes (spawn), one ``Worker(docket, concurrency=C)`` each running
   ``run_forever``, waits until every one is connected, then lets them all start at once;
3. a Docket worker reports no completion to the task, so the processing window runs from
   the first claim (the handler's start) to the moment this process sees every task
   finished: N handlers ran, nothing is left in the docket's queue and no stream entry is
   pending (Docket acknowledges the entry in the same script that marks it completed);
   polled every 20 ms;
4. stops the workers, deletes the docket's keys, prints ONE JSON line on stdout (the
   contract at the top of run.py) and exits; 0 when the run completed.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
from typing import Any

import redis
import redis.asyncio
from _program import (
    Tally,
    WorkerPool,
    contract_parser,
    delete_keys,
    new_record,
    noop,
    run_contract,
    serve,
)
from docket import Docket, Worker
from docket import __version__ as docket_version
from docket.execution import Disposition


# ------------------------------------------------------------------ worker process
async def _worker(tally: Tally, ready: Any, stop: Any, url: str, name: str, c: int) -> None:
    logging.getLogger("docket").setLevel(logging.WARNING)  # a log line per task otherwise
    async with Docket(name=name, url=url) as docket:
        docket.register(noop)
        async with Worker(docket, concurrency=c) as worker:
            await serve(tally, ready, stop, worker.run_forever)


# ------------------------------------------------------------------ parent process
async def main(argv: list[str]) -> int:
    args = contract_parser(__doc__.splitlines()[0], batch=True).parse_args(argv)
    admin = redis.asyncio.Redis.from_url(args.redis_url)
    info = await admin.info("server")
    record = new_record(
        "docket",
        args,
        {
            "pydocket": docket_version,
            "redis-py": redis.__version__,
            "python": platform.python_version(),
            "redis": info.get("redis_version"),
        },
        {
            "add": f"Docket.add_many, chunks of {args.batch} Docket.call(noop)() specs",
            "worker": "Worker(docket, concurrency=C).run_forever(), Docket's defaults "
            "(redelivery_timeout 5 min, minimum_check_interval 250 ms, message_batch)",
            "job_options": "Docket's defaults (execution_ttl 15 min: finished executions "
            "kept 15 minutes, no retries)",
            "handler": "async def noop(): pass",
            "window_end": "seen by the parent (polled every 20 ms)",
        },
    )

    async def add() -> None:
        async with Docket(name=args.prefix, url=args.redis_url) as docket:
            docket.register(noop)
            for start in range(0, args.jobs, args.batch):
                calls = [docket.call(noop)() for _ in range(min(args.batch, args.jobs - start))]
                added = await docket.add_many(calls, chunk_size=args.batch)
                if any(e.disposition is not Disposition.SCHEDULED for e in added):
                    raise RuntimeError("Docket did not schedule a task")

    async def process(deadline: float) -> None:
        async with Docket(name=args.prefix, url=args.redis_url) as docket:
            stream, queue, group = docket.stream_key, docket.queue_key, docket.worker_group_name
        pool = WorkerPool(args.processes, _worker, (args.redis_url, args.prefix, args.concurrency))

        async def drained() -> bool:
            if pool.finished() < args.jobs:
                return False
            async with admin.pipeline(transaction=False) as pipe:
                pipe.xpending(stream, group)
                pipe.zcard(queue)
                pending, queued = await pipe.execute()
            return not pending["pending"] and not queued

        await pool.run(drained, admin, record, args.jobs, deadline, ends_when_seen=True)

    async def cleanup() -> int:
        return await delete_keys(admin, f"*{args.prefix}*")

    try:
        return await run_contract(args, record, add, process, cleanup)
    finally:
        await admin.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
