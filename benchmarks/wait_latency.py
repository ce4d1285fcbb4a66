"""Wake-up latency of ``wait``: from a write in another process to the waiter's return.

    python benchmarks/wait_latency.py                  # standalone and cluster, 1/1,000/10,000
    python benchmarks/wait_latency.py --waiters 1 1000 --samples 200 --kinds redis

This process holds N concurrent waiters (async store, one task each) and a
writer process changes one of those tasks at a time. The writer notes
``time.monotonic_ns()`` (one clock for every process on Linux) just before it
sends the write; the waiter notes it when ``wait`` returns, then waits again for
the next version, so N waiters stay in place throughout. Samples are taken one
at a time (no queueing). With the most waiters, the script also measures the
CPU time this process spends over ``--idle`` seconds with all of them idle, and
the sockets it holds. Servers are throwaway ones from ``taskstore_redis.testing``
unless ``--redis-url`` / ``--cluster-url`` are given. Results, with the load
average as each row started, go to ``benchmarks/wait-results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import SecurityConfig
from taskstore_redis.testing import redis_cluster, redis_server

UNLIMITED = SecurityConfig(max_tasks_per_owner=None)
OWNERS = 64
METHOD = "tools/call"
PREFIX = "waitbench"
RESULTS = Path(__file__).resolve().parent / "wait-results.json"


def writer_main(url: str, requests: Connection, replies: Connection) -> None:
    """The other process: on each (owner, task id), note the time and write."""
    with ts.GenericTaskStore.from_url(url, prefix=PREFIX, security=UNLIMITED) as store:
        while True:
            job = requests.recv()
            if job is None:
                return
            owner, task_id, n = job
            started = time.monotonic_ns()
            store.set_variables(task_id, {"n": n}, owner_id=owner)
            replies.send(started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sockets_held() -> int:
    """Sockets this process holds (the writer talks to it through pipes, not sockets)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


async def run_one(url: str, waiters: int, samples: int, idle: float) -> dict[str, Any]:
    """N waiters in this process, a writer in another; return the figures."""
    context = multiprocessing.get_context("spawn")
    request_out, request_in = context.Pipe(duplex=False)
    reply_out, reply_in = context.Pipe(duplex=False)
    writer = context.Process(target=writer_main, args=(url, request_out, reply_in))
    writer.start()
    returned: dict[int, int] = {}
    armed: dict[int, anyio.Event] = {}
    async with tsa.GenericTaskStore.from_url(url, prefix=PREFIX, security=UNLIMITED) as store:
        tasks: list[tuple[str, str]] = []
        for n in range(waiters):
            owner = f"owner-{n % OWNERS}"
            tasks.append((owner, (await store.create(METHOD, owner_id=owner)).task.task_id))
        backend: Any = store.backend

        async def waiter(index: int) -> None:
            owner, task_id = tasks[index]
            version = 1
            while True:
                armed[index] = anyio.Event()
                record = await store.wait(task_id, owner_id=owner, after_version=version)
                returned[index] = time.monotonic_ns()
                version = record.version
                armed[index].set()

        latencies: list[float] = []
        figures: dict[str, Any] = {"waiters": waiters}
        async with anyio.create_task_group() as group:
            for index in range(waiters):
                group.start_soon(waiter, index)
            await until_subscribed(backend, waiters)
            if waiters >= 10_000 and idle:
                figures.update(await idle_cost(backend, idle))
            for sample in range(samples):
                index = random.randrange(waiters)
                done = armed[index]
                request_in.send((*tasks[index], sample))
                started = await anyio.to_thread.run_sync(reply_out.recv)
                await done.wait()
                latencies.append((returned[index] - started) / 1e6)
                await until_subscribed(backend, waiters)  # the waiter is back in place
            group.cancel_scope.cancel()
    request_in.send(None)
    writer.join(30)
    figures.update(
        samples=len(latencies),
        p50_ms=round(statistics.median(latencies), 3),
        p99_ms=round(percentile(latencies, 0.99), 3),
        max_ms=round(max(latencies), 3),
    )
    return figures


async def until_subscribed(backend: Any, waiters: int) -> None:
    """Until every waiter is registered and every channel confirmed by its server."""
    while True:
        hub = backend._hub
        if hub is not None and backend.watch_registrations() == waiters:
            states = hub.subscriber._channels.values()
            if all(state.confirmed.is_set() for state in states):
                return
        await anyio.sleep(0.001)


async def idle_cost(backend: Any, seconds: float) -> dict[str, Any]:
    """CPU time of this process over ``seconds`` with every waiter idle, and its sockets."""
    links = backend._hub.subscriber._links
    # the waiters' first reads may still be going on: settle until a quiet second
    settle_started = time.monotonic()
    while time.monotonic() - settle_started < 60:
        before = time.process_time()
        await anyio.sleep(1.0)
        if time.process_time() - before < 0.02:
            break
    settled = time.monotonic() - settle_started
    before = time.process_time()
    await anyio.sleep(seconds)
    spent = time.process_time() - before
    return {
        "settle_seconds": round(settled, 1),
        "idle_seconds": seconds,
        "idle_cpu_percent": round(100 * spent / seconds, 3),
        "subscription_connections": sum(1 for link in links.values() if link.connected),
        "sockets_held": sockets_held(),
    }


@contextlib.contextmanager
def servers(args: argparse.Namespace) -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        if "redis" in args.kinds:
            urls["redis"] = args.redis_url or stack.enter_context(redis_server()).url
        if "cluster" in args.kinds:
            urls["cluster"] = args.cluster_url or stack.enter_context(redis_cluster(3)).url
        yield urls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["redis", "cluster"])
    parser.add_argument("--waiters", nargs="+", type=int, default=[1, 1_000, 10_000])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--redis-url")
    parser.add_argument("--cluster-url")
    args = parser.parse_args()
    rows = []
    with servers(args) as urls:
        for kind, url in urls.items():
            for waiters in args.waiters:
                load = os.getloadavg()[0]
                figures = anyio.run(run_one, url, waiters, args.samples, args.idle)
                figures["kind"] = kind
                figures["load_average_at_start"] = round(load, 2)
                rows.append(figures)
                print(json.dumps(figures), flush=True)
    document = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "rows": rows}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
