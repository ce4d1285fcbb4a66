"""streaq side of the work-queue peer benchmark.

python streaq_bench.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
    --concurrency 10 --prefix bench-ab12 [--batch 1000] [--timeout 300]

Runs in a scratch virtualenv that has streaq (the runner, run.py, makes it); it is not part
of the project's dependencies. The queue is named after the prefix, so every key streaq
writes holds it (``streaq:<prefix>:...``).

1. adds N no-op tasks with ``Worker.enqueue_many`` (streaq's batch API: one pipeline per
   ``--batch`` tasks built with ``task.enqueue()``; the add rate);
2. starts P worker processes (spawn), one streaq ``Worker(concurrency=C)`` each, waits
   until every one has reached the server (and loaded streaq's scripts), then lets them
   all start at once: each then runs ``run_async``, which opens its own connection;
3. a task does not see its own completion (streaq writes it after the task returns), so
   the processing window runs from the first claim (a task's start) to the moment this
   process sees every task finished: N tasks ran, the queue's stream is empty (streaq
   deletes each entry with its result) and none is running; polled every 20 ms;
4. stops the workers, deletes the queue's keys, prints ONE JSON line on stdout (the
   contract at the top of run.py) and exits; 0 when the run completed.
"""

from __future__ import annotations

import asyncio
import platform
import sys
from importlib.metadata import version
from typing import Any

import redis
import redis.asyncio
import streaq
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
from streaq import Worker


def make_worker(url: str, name: str, concurrency: int) -> tuple[Worker[Any], Any]:
    """A streaq worker for the queue, with the task registered; (worker, task)."""
    worker: Worker[Any] = Worker(redis_url=url, queue_name=name, concurrency=concurrency)
    return worker, worker.task(noop)


# ------------------------------------------------------------------ worker process
async def _worker(tally: Tally, ready: Any, stop: Any, url: str, name: str, c: int) -> None:
    worker, _ = make_worker(url, name, c)
    async with worker:  # the server answers and takes the scripts before the start signal
        pass  # (run_async opens its own connection, inside the measured window)
    await serve(tally, ready, stop, worker.run_async)


# ------------------------------------------------------------------ parent process
async def main(argv: list[str]) -> int:
    args = contract_parser(__doc__.splitlines()[0], batch=True).parse_args(argv)
    admin = redis.asyncio.Redis.from_url(args.redis_url)
    info = await admin.info("server")
    record = new_record(
        "streaq",
        args,
        {
            "streaq": streaq.__version__,
            "coredis": version("coredis"),
            "python": platform.python_version(),
            "redis": info.get("redis_version"),
        },
        {
            "add": f"Worker.enqueue_many, batches of {args.batch} noop.enqueue() tasks",
            "worker": "Worker(concurrency=C).run_async(), streaq's defaults (prefetch C, "
            "idle_timeout 60 s)",
            "job_options": "streaq's defaults (ttl 5 min: results kept 5 minutes, "
            "max_tries 3, no timeout)",
            "handler": "async def noop(): pass",
            "window_end": "seen by the parent (polled every 20 ms)",
        },
    )

    async def add() -> None:
        worker, task = make_worker(args.redis_url, args.prefix, args.concurrency)
        async with worker:
            for start in range(0, args.jobs, args.batch):
                n = min(args.batch, args.jobs - start)
                await worker.enqueue_many([task.enqueue() for _ in range(n)])

    async def process(deadline: float) -> None:
        pool = WorkerPool(args.processes, _worker, (args.redis_url, args.prefix, args.concurrency))
        worker, _ = make_worker(args.redis_url, args.prefix, args.concurrency)
        streams = [worker.stream_key + priority for priority in worker.priorities]

        async def drained() -> bool:
            if pool.finished() < args.jobs:
                return False
            async with admin.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xlen(stream)
                pipe.scard(worker._running_set)
                return not any(await pipe.execute())

        await pool.run(drained, admin, record, args.jobs, deadline, ends_when_seen=True)

    async def cleanup() -> int:
        return await delete_keys(admin, f"*{args.prefix}*")

    try:
        return await run_contract(args, record, add, process, cleanup)
    finally:
        await admin.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
