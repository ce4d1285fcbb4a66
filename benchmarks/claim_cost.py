"""What a claim costs the server, per claimed job: Redis CPU and claim calls.

``python benchmarks/claim_cost.py [--jobs 20000] [--groups 64] [--count 10]
[--limits none|queue|all] [--repo PATH]``

1. starts a throwaway ``redis-server`` (``taskstore_redis.testing.redis_server()``; the
   binary named by ``TASKSTORE_REDIS_SERVER``, else ``redis-server`` on the path);
2. submits N jobs on one shard of a queue (one owner, so every claim reads one ready
   set), spread over G flow-control groups (``group=``, when the store has them; one
   FIFO group otherwise) round robin; with ``--limits queue`` the queue, with ``all`` the
   queue and every group, get limits that never bind (1,000,000 leases at once and
   claims per second), so every claim pays for the counting and the token buckets;
3. claims them ``--count`` at a time with ``claim_many`` until none is left, never
   completing them, and reads the server's CPU (``INFO cpu``: used_cpu_user +
   used_cpu_sys) before and after;
4. prints the server's CPU microseconds per claimed job and the claim calls made.

The server runs nothing else, so its CPU is the claims' cost there: the Lua of the
claim script. ``--repo PATH`` imports ``taskstore_redis`` from another checkout, to
compare two versions in one run of the same script.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--groups", type=int, default=64)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--limits", choices=("none", "queue", "all"), default="none")
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    return p.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    sys.path.insert(0, args.repo)
    import redis

    import taskstore_redis as ts
    from taskstore_redis.testing import redis_server

    grouped = "group" in inspect.signature(ts.GenericTaskStore.submit).parameters
    with redis_server() as server:
        url = server.url
        admin = redis.Redis.from_url(url)
        security = ts.SecurityConfig(max_tasks_per_owner=None)
        with ts.GenericTaskStore.from_url(url, security=security) as store:
            if args.limits != "none":
                huge = 1_000_000
                store.set_limits("bench", max_concurrency=huge, per_second=huge, burst=huge)
            if args.limits == "all":
                for n in range(args.groups):
                    store.set_limits(
                        "bench", group=f"g{n}", max_concurrency=huge, per_second=huge, burst=huge
                    )
            for n in range(args.jobs):
                options = {"group": f"g{n % args.groups}"} if grouped else {}
                store.submit("tools/call", None, owner_id="owner", queue="bench", **options)

            def cpu() -> float:
                info = admin.info("cpu")
                return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

            before, started = cpu(), time.perf_counter()
            claimed = calls = 0
            while claimed < args.jobs:
                leases = store.claim_many("bench", args.count, timeout=0, lease_ms=600_000)
                calls += 1
                if not leases:
                    raise SystemExit(f"claimed {claimed} of {args.jobs}, then nothing")
                claimed += len(leases)
            server_s, wall_s = cpu() - before, time.perf_counter() - started
    print(
        f"repo={args.repo} groups={args.groups if grouped else 1} jobs={claimed} "
        f"count={args.count} calls={calls} limits={args.limits}"
    )
    print(f"server CPU per claimed job: {server_s / claimed * 1e6:.1f} us")
    print(f"client wall per claimed job: {wall_s / claimed * 1e6:.1f} us")


if __name__ == "__main__":
    main(sys.argv[1:])
