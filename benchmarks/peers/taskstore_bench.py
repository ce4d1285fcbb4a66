"""taskstore side of the work-queue peer benchmark: submit -> claim -> complete.

python taskstore_bench.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
    --concurrency 10 --prefix bench-ab12 [--variant store|raw|worker] [--timeout 300]
    [--recovery-lease-ms 500,2000]

Runs with this tree's ``taskstore_redis`` (the folder two levels up comes first on the path).

1. submits N no-op jobs (``store.submit`` from 256 concurrent coroutines, which the store
   coalesces into pipelines; the add rate);
2. starts P worker processes (spawn), each with its own store, waits until every one is
   connected, then lets them all start at once; each keeps C jobs in flight: it fills
   its free slots with one ``claim_many`` while the jobs it holds complete
   (``Lease.complete``, fenced);
3. the processing rate is N / (last completion - first claim), over all processes;
4. ``--variant raw`` does the same through a plain ``redis.asyncio`` client sending the
   same scripts with the same arguments (``create.lua`` with its queue part, ``claim.lua``
   per shard, ``compare_and_set.lua`` with the fence), through the same auto-pipelining:
   no domain checks, no record decoding, no leases, no change notices (an idle raw
   worker sleeps 5 ms between rounds of empty claims);
5. ``--variant worker`` runs the API users call instead of the loop of 2.: each worker
   process runs ``run_worker(store, handler, concurrency=C)``, the handler returning the
   result; ``run_worker`` writes the completion after the handler returns, so the window
   ends when this process sees the queue empty (nothing ready, delayed or leased) after
   N handlers ran, polled every 20 ms;
6. each worker process reports its CPU time from the start signal to the stop, and this
   process reads the server's (``INFO cpu``) over the same phase;
7. with ``--recovery-lease-ms`` (store variant), then measures recovery: a spawned process
   claims one task with that lease and is SIGKILLed at once; a claim already waiting in
   this process gets the task when the lease has run out. Reported per lease: kill ->
   next claim, and how long after the lease's deadline (the server's clock) that was;
8. deletes every key of its prefix and prints ONE JSON line (the contract at the top of
   run.py); exit 0 when the run completed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyio
import redis
import redis.asyncio
from _program import (
    Tally,
    WorkerPool,
    contract_parser,
    delete_keys,
    new_record,
    run_contract,
)

import taskstore_redis
from taskstore_redis._async._pipeline import AutoPipeline
from taskstore_redis._cli.bench._workload import DONE, RESULT, representative_payloads
from taskstore_redis._core.config import SecurityConfig, StoreConfig
from taskstore_redis._core.model import FORMAT
from taskstore_redis._redis.contract import (
    Call,
    Code,
    claim_call,
    compare_and_set_call,
    create_call,
)
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import CLAIM, COMPARE_AND_SET, CREATE
from taskstore_redis.asyncio import GenericTaskStore, TaskStatus, run_worker
from taskstore_redis.backend import CoreWrite, Fence, NewJob, NewTask, TaskKey

QUEUE = "bench"
OWNERS = 64
"""Owners the jobs are spread over (so over the store's shards)."""
ADD_LANES = 256
METHOD = "tools/call"
RECOVERY_BATCH = StoreConfig().recovery_batch


def _leases(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = contract_parser(__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("store", "raw", "worker"), default="store")
    p.add_argument("--recovery-lease-ms", type=_leases, default=[])
    return p.parse_args(argv)


def owner(n: int) -> str:
    return f"bench-owner-{n % OWNERS}"


def _store(url: str, prefix: str) -> GenericTaskStore:
    return GenericTaskStore.from_url(
        url, prefix=prefix, security=SecurityConfig(max_tasks_per_owner=None)
    )


async def _lanes(count: int, lanes: int, work: Callable[[int], Awaitable[None]]) -> None:
    numbers = iter(range(count))

    async def lane() -> None:
        for n in numbers:
            await work(n)

    async with anyio.create_task_group() as group:
        for _ in range(min(lanes, count)):
            group.start_soon(lane)


# ----------------------------------------------------------------------- the raw side
class Raw:
    """The same scripts, arguments and pipelining as the store, without the store."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.asyncio.Redis.from_url(url)
        self.pipeline = AutoPipeline(enabled=True)
        self.keys = KeySchema(prefix)
        payloads = representative_payloads()
        self.created = payloads["create"]
        self.completed = payloads["complete_with_result"]
        self.created_at_ms = int(self.created.split(b",", 2)[1])
        """The index member must name the created_at of the core record sent."""
        self.token = secrets.token_hex(4)
        self.shard = 0

    async def send(self, *command: Any) -> Any:
        return await self.pipeline.execute(self.client, *command)

    async def call(self, call: Call) -> Any:
        return await self.send(*call.command())

    async def load(self) -> None:
        for script in (CREATE, CLAIM, COMPARE_AND_SET):
            await self.client.script_load(script.source)

    async def submit(self, n: int) -> None:
        now = time.time_ns() // 1_000_000
        task = NewTask(
            key=TaskKey(owner(n), f"{self.token}{n:012x}"),
            format=FORMAT,
            data=self.created,
            created_at_ms=self.created_at_ms,
            expires_at_ms=None,
            purge_at_ms=None,
            max_live=None,
            now_ms=now,
            job=NewJob(queue=QUEUE, params=b"null", max_attempts=3, delay_ms=0),
        )
        if await self.call(create_call(self.keys, task, f"{self.token}{n:012x}")) != Code.OK:
            raise RuntimeError("raw create refused")

    async def claim(self, count: int, worker: str) -> list[Any]:
        """Up to ``count`` jobs from the first shard with any, round-robin; [] after a pause."""
        shards = self.keys.shards
        for _ in range(shards):
            self.shard = (self.shard + 1) % shards
            reply = await self.call(
                claim_call(
                    self.keys,
                    QUEUE,
                    self.shard,
                    count=count,
                    lease_ms=30_000,
                    worker_id=worker,
                    batch=RECOVERY_BATCH,
                )
            )
            if reply[0]:
                return list(reply[0])
        await anyio.sleep(0.005)  # no change notices on this side: a short pause
        return []

    async def finish(self, claimed: Any) -> None:
        """Complete one job of a ``claim`` reply."""
        member, token, _attempt, _deadline, core, _joined, owner_id = claimed
        await self.complete(member, int(token), core, owner_id)

    async def complete(self, member: bytes, token: int, core: list[Any], owner_id: bytes) -> None:
        fields = dict(zip(core[::2], core[1::2], strict=True))
        created = int(fields[b"d"].split(b",", 2)[1])  # the core record's created_at
        key = TaskKey(owner_id.decode(), KeySchema.task_id_of_member(member.decode()))
        now = time.time_ns() // 1_000_000
        write = CoreWrite(
            key=key,
            expected_core_version=int(fields[b"k"]),
            format=FORMAT,
            data=self.completed,
            created_at_ms=created,
            terminal=True,
            now_ms=now,
            fence=Fence(queue=QUEUE, token=token),
            status=TaskStatus.COMPLETED.value,
        )
        reply = await self.call(
            compare_and_set_call(self.keys, write, f"{token:x}{member[-12:].decode()}")
        )
        if int(reply[0]) != Code.OK:
            raise RuntimeError(f"raw complete refused: {reply[:2]!r}")


# ------------------------------------------------------------------ worker process
async def _worker(
    tally: Tally, ready: Any, stop: Any, url: str, prefix: str, concurrency: int, variant: str
) -> None:
    name = f"bench-worker-{tally.index}"

    def done(count: int) -> None:
        for _ in range(count):
            tally.finished()

    if variant == "raw":
        side = Raw(url, prefix)
        await side.load()
        side.shard = tally.index  # workers start on different shards
        await anyio.to_thread.run_sync(ready.wait, 600)
        tally.started()

        async def raw_claim(free: int) -> list[Any]:
            jobs = await side.claim(free, name)
            if jobs:
                tally.claimed()
            return jobs

        await _keep_busy(concurrency, stop, raw_claim, side.finish, done)
        tally.stopped()
        await side.client.aclose()
        return
    async with _store(url, prefix) as store:
        await store.queue_stats(QUEUE)  # connected before the start signal
        await anyio.to_thread.run_sync(ready.wait, 600)
        tally.started()
        if variant == "worker":

            async def handler(lease: Any) -> Any:
                tally.claimed()
                tally.finished()  # the completion is written after: the parent sees it
                return RESULT

            await run_worker(
                store,
                handler,
                queue=QUEUE,
                concurrency=concurrency,
                stop=stop,
                handle_signals=False,
                worker_id=name,
            )
            tally.stopped()
            return

        async def take(free: int) -> list[Any]:
            leases = await store.claim_many(QUEUE, free, timeout=0.2, worker_id=name)
            if leases:
                tally.claimed()
            return leases

        async def finish(lease: Any) -> None:
            await lease.complete(TaskStatus.COMPLETED, DONE, RESULT)

        await _keep_busy(concurrency, stop, take, finish, done)
        tally.stopped()


async def _keep_busy(
    concurrency: int,
    stop: Any,
    take: Callable[[int], Awaitable[list[Any]]],
    finish: Callable[[Any], Awaitable[None]],
    done: Callable[[int], None],
) -> None:
    """Claim into the free slots while earlier jobs complete: up to C jobs in flight.

    A claim does not wait for the whole previous batch to complete (like a BullMQ or
    saq worker of concurrency C, and ``run_worker``), but waits until half the slots
    are free, so that each claim takes several jobs.
    """
    free = concurrency
    freed = anyio.Event()
    batch = max(1, concurrency // 2)

    async def run(job: Any) -> None:
        nonlocal free
        await finish(job)
        done(1)
        free += 1
        freed.set()

    async with anyio.create_task_group() as group:
        while not stop.is_set():
            if free < batch:
                with anyio.move_on_after(0.2):
                    await freed.wait()
                freed = anyio.Event()
                continue
            jobs = await take(free)
            free -= len(jobs)
            for job in jobs:
                group.start_soon(run, job)


# --------------------------------------------------------------------- recovery probe
def _victim_main(url: str, prefix: str, lease_ms: int, claimed: Any) -> None:
    async def main() -> None:
        async with _store(url, prefix) as store:
            lease = await store.claim("recovery", lease_ms=lease_ms, timeout=30)
            assert lease is not None
            claimed.put(lease.expires_at.timestamp())
            await anyio.sleep(3600)  # holds the lease until killed

    anyio.run(main)


async def _recovery(url: str, prefix: str, lease_ms: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    claimed = ctx.Queue()
    async with _store(url, prefix) as store:
        await store.submit(METHOD, owner_id=owner(0), queue="recovery")
        victim = ctx.Process(target=_victim_main, args=(url, prefix, lease_ms, claimed))
        victim.start()
        deadline = await anyio.to_thread.run_sync(claimed.get, True, 60)
        got: list[Any] = []

        async def waiting_claim() -> None:
            got.append(await store.claim("recovery", timeout=lease_ms / 1000 + 30))
            got.append(time.time())

        async with anyio.create_task_group() as group:
            group.start_soon(waiting_claim)
            await anyio.sleep(0.05)  # the claim waits (subscribed) before the kill
            assert victim.pid is not None
            killed = time.time()
            os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        lease, at = got
        if lease is None:
            return {"lease_ms": lease_ms, "error": "the task was not claimed again"}
        await lease.complete(TaskStatus.COMPLETED, DONE, RESULT)
        return {
            "lease_ms": lease_ms,
            "kill_to_next_claim_ms": round((at - killed) * 1000, 1),
            "lease_left_at_kill_ms": round((deadline - killed) * 1000, 1),
            "after_lease_deadline_ms": round((at - deadline) * 1000, 1),
            "attempt": lease.attempt,
        }


# ------------------------------------------------------------------ parent process
async def _add(args: argparse.Namespace) -> None:
    if args.variant == "raw":
        side = Raw(args.redis_url, args.prefix)
        await side.load()
        await _lanes(args.jobs, ADD_LANES, side.submit)
        await side.client.aclose()
        return
    async with _store(args.redis_url, args.prefix) as store:

        async def submit(n: int) -> None:
            await store.submit(METHOD, owner_id=owner(n), queue=QUEUE)

        await _lanes(args.jobs, ADD_LANES, submit)


async def _process(
    args: argparse.Namespace, record: dict[str, Any], admin: Any, deadline: float
) -> None:
    workers = WorkerPool(
        args.processes, _worker, (args.redis_url, args.prefix, args.concurrency, args.variant)
    )
    async with _store(args.redis_url, args.prefix) as store:

        async def drained() -> bool:
            if workers.finished() < args.jobs:
                return False
            if args.variant != "worker":
                return True
            stats = await store.queue_stats(QUEUE)
            return not (stats.ready or stats.delayed or stats.leased)

        ends_when_seen = args.variant == "worker"
        await workers.run(
            drained, admin, record, args.jobs, deadline, ends_when_seen=ends_when_seen
        )


PEER_NAMES = {"store": "taskstore", "raw": "taskstore-raw", "worker": "taskstore-worker"}
WORKER_SETTINGS = {
    "store": "claim_many(free slots) while earlier jobs complete (Lease.complete, fenced, "
    "one result); C in flight; lease 30 s, no renewals",
    "raw": "EVALSHA claim.lua (free slots) shard by shard while earlier jobs complete "
    "(compare_and_set.lua, fenced); 5 ms pause after a round of empty shards",
    "worker": "run_worker(store, handler, concurrency=C), its defaults otherwise (lease "
    "30 s renewed each third, idle_wait_s 1, sweep every 10 s); the handler returns the "
    "result",
}


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    admin = redis.asyncio.Redis.from_url(args.redis_url)
    server = (await admin.info("server")).get("redis_version")
    record = new_record(
        PEER_NAMES[args.variant],
        args,
        {
            "taskstore_redis": taskstore_redis.__version__,
            "redis-py": redis.__version__,
            "python": platform.python_version(),
            "redis": server,
        },
        {
            "add": (
                f"EVALSHA create.lua (queue part) from {ADD_LANES} coroutines, "
                f"auto-pipelined, {OWNERS} owners"
                if args.variant == "raw"
                else f"store.submit from {ADD_LANES} coroutines (auto-pipelined), {OWNERS} owners"
            ),
            "worker": WORKER_SETTINGS[args.variant],
            "job_options": "max_attempts 3, no delay; finished tasks kept (TTL: store default)",
            "handler": "none (claim, then complete with the store benchmark's small result)",
        },
    )
    if args.variant == "worker":
        record["settings"]["window_end"] = "seen by the parent (polled every 20 ms)"

    async def process(deadline: float) -> None:
        await _process(args, record, admin, deadline)
        if args.variant == "store" and args.recovery_lease_ms:
            record["recovery"] = [
                await _recovery(args.redis_url, args.prefix, lease_ms)
                for lease_ms in args.recovery_lease_ms
            ]

    async def cleanup() -> int:
        return await delete_keys(admin, f"*{args.prefix}*")

    try:
        return await run_contract(args, record, lambda: _add(args), process, cleanup)
    finally:
        await admin.aclose()


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
