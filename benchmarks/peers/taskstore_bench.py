"""taskstore side of the work-queue peer benchmark: submit -> claim -> complete.

python taskstore_bench.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000 --processes 4 \
    --concurrency 10 --prefix bench-ab12 [--variant store|raw] [--timeout 300]
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
5. with ``--recovery-lease-ms`` (store variant), then measures recovery: a spawned process
   claims one task with that lease and is SIGKILLed at once; a claim already waiting in
   this process gets the task when the lease has run out. Reported per lease: kill ->
   next claim, and how long after the lease's deadline (the server's clock) that was;
6. deletes every key of its prefix and prints ONE JSON line (the contract at the top of
   run.py); exit 0 when the run completed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyio
import redis
import redis.asyncio
from _program import contract_parser

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
from taskstore_redis.asyncio import GenericTaskStore, TaskStatus
from taskstore_redis.backend import CoreWrite, Fence, NewJob, NewTask, TaskKey

QUEUE = "bench"
OWNERS = 64
"""Owners the jobs are spread over (so over the store's shards)."""
ADD_LANES = 256
METHOD = "tools/call"
RECOVERY_BATCH = StoreConfig().recovery_batch
# one slot per worker process: completed, first claim, last completion (time.time())
_FIELDS = 3


def _leases(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = contract_parser(__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("store", "raw"), default="store")
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
def _worker_main(*args: Any) -> None:
    """Entry point of a worker process: ``_worker``'s arguments."""
    anyio.run(_worker, *args)


async def _worker(
    index: int,
    url: str,
    prefix: str,
    concurrency: int,
    variant: str,
    slots: SynchronizedArray[float],
    ready: Barrier,
    stop: Event,
    timeout: float,
) -> None:
    base = index * _FIELDS
    raw = slots.get_obj()  # one writer per slot: no lock needed
    name = f"bench-worker-{index}"

    def done(count: int) -> None:
        now = time.time()
        if raw[base + 1] == 0.0:
            raw[base + 1] = now
        raw[base] += count
        raw[base + 2] = now

    if variant == "raw":
        side = Raw(url, prefix)
        await side.load()
        side.shard = index
        await anyio.to_thread.run_sync(ready.wait, timeout)
        await _keep_busy(concurrency, stop, lambda free: side.claim(free, name), side.finish, done)
        await side.client.aclose()
        return
    async with _store(url, prefix) as store:
        await store.queue_stats(QUEUE)  # connected before the start signal
        await anyio.to_thread.run_sync(ready.wait, timeout)

        async def take(free: int) -> list[Any]:
            return await store.claim_many(QUEUE, free, timeout=0.2, worker_id=name)

        async def finish(lease: Any) -> None:
            await lease.complete(TaskStatus.COMPLETED, DONE, RESULT)

        await _keep_busy(concurrency, stop, take, finish, done)


async def _keep_busy(
    concurrency: int,
    stop: Event,
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
async def _delete_keys(url: str, prefix: str) -> int:
    client = redis.asyncio.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


async def _add(args: argparse.Namespace) -> float:
    start = time.perf_counter()
    if args.variant == "raw":
        side = Raw(args.redis_url, args.prefix)
        await side.load()
        start = time.perf_counter()
        await _lanes(args.jobs, ADD_LANES, side.submit)
        await side.client.aclose()
        return time.perf_counter() - start
    async with _store(args.redis_url, args.prefix) as store:

        async def submit(n: int) -> None:
            await store.submit(METHOD, owner_id=owner(n), queue=QUEUE)

        await store.queue_stats(QUEUE)
        start = time.perf_counter()
        await _lanes(args.jobs, ADD_LANES, submit)
        return time.perf_counter() - start


async def _process(
    args: argparse.Namespace, record: dict[str, Any], procs: list[Any], deadline: float
) -> None:
    ctx = mp.get_context("spawn")
    slots = ctx.Array("d", _FIELDS * args.processes)
    ready = ctx.Barrier(args.processes + 1)
    stop = ctx.Event()
    for i in range(args.processes):
        proc = ctx.Process(
            target=_worker_main,
            args=(
                i,
                args.redis_url,
                args.prefix,
                args.concurrency,
                args.variant,
                slots,
                ready,
                stop,
                600.0,
            ),
            daemon=True,
        )
        proc.start()
        procs.append(proc)
    raw = slots.get_obj()
    try:
        await anyio.to_thread.run_sync(ready.wait, max(0.1, deadline - time.monotonic()))
        while sum(raw[i * _FIELDS] for i in range(args.processes)) < args.jobs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {args.timeout} s")
            if any(not p.is_alive() for p in procs):
                raise RuntimeError("a worker process exited early")
            await anyio.sleep(0.02)
    finally:
        stop.set()
        ready.abort()
        stopping = time.monotonic() + 10
        for proc in procs:
            await anyio.to_thread.run_sync(proc.join, max(0.0, stopping - time.monotonic()))
    done = [int(raw[i * _FIELDS]) for i in range(args.processes)]
    firsts = [raw[i * _FIELDS + 1] for i in range(args.processes) if raw[i * _FIELDS + 1]]
    lasts = [raw[i * _FIELDS + 2] for i in range(args.processes) if raw[i * _FIELDS + 2]]
    record["completed"] = min(sum(done), args.jobs)
    record["redelivered"] = max(0, sum(done) - args.jobs)
    record["per_process"] = done
    if firsts and lasts:
        record["process_seconds"] = max(lasts) - min(firsts)
        record["process_rate"] = sum(done) / record["process_seconds"]


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout
    admin = redis.Redis.from_url(args.redis_url)
    try:
        server = admin.info("server").get("redis_version")
    finally:
        admin.close()
    name = "taskstore" if args.variant == "store" else "taskstore-raw"
    record: dict[str, Any] = {
        "peer": name,
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
            "taskstore_redis": taskstore_redis.__version__,
            "redis-py": redis.__version__,
            "python": platform.python_version(),
            "redis": server,
        },
        "settings": {
            "prefix": args.prefix,
            "add": (
                f"store.submit from {ADD_LANES} coroutines (auto-pipelined), {OWNERS} owners"
                if args.variant == "store"
                else f"EVALSHA create.lua (queue part) from {ADD_LANES} coroutines, "
                f"auto-pipelined, {OWNERS} owners"
            ),
            "worker": (
                "claim_many(free slots) while earlier jobs complete (Lease.complete, "
                "fenced, one result); C in flight; lease 30 s, no renewals"
                if args.variant == "store"
                else "EVALSHA claim.lua (free slots) shard by shard while earlier jobs "
                "complete (compare_and_set.lua, fenced); 5 ms pause after a round of empty shards"
            ),
            "job_options": "max_attempts 3, no delay; finished tasks kept (TTL: store default)",
            "handler": "none (claim, then complete with the store benchmark's small result)",
        },
        "error": None,
    }
    procs: list[Any] = []
    try:
        with anyio.fail_after(max(0.1, deadline - time.monotonic())):
            seconds = await _add(args)
        record["add_seconds"] = seconds
        record["add_rate"] = args.jobs / seconds
        await _process(args, record, procs, deadline)
        record["ok"] = record["completed"] == args.jobs
        if not record["ok"]:
            record["error"] = f"completed {record['completed']} of {args.jobs}"
        if args.variant == "store" and args.recovery_lease_ms:
            record["recovery"] = [
                await _recovery(args.redis_url, args.prefix, lease_ms)
                for lease_ms in args.recovery_lease_ms
            ]
    except TimeoutError:
        record["error"] = f"timed out after {args.timeout} s"
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        try:
            record["settings"]["keys_deleted"] = await _delete_keys(args.redis_url, args.prefix)
        except Exception as exc:
            record["error"] = f"{record['error'] or ''}; cleanup failed: {exc}"
    sys.stdout.write(json.dumps(record) + "\n")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
