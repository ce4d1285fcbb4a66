"""Redis commands per second of the dashboard, with 1, 10 and 100 pages open.

``python benchmarks/dashboard_cost.py [--pages 1 10 100] [--seconds 20] [--interval 2]
[--queues 5] [--json FILE]``

1. starts a dedicated throwaway ``redis-server`` (``taskstore_redis.testing.redis_server()``;
   the binary named by ``TASKSTORE_REDIS_SERVER``, else ``redis-server`` on the path);
2. fills it: ``--queues`` queues of 40 tasks each over 20 owners, 10 of each queue's
   tasks leased (held by 2 workers), so every page has rows to read;
3. serves ``create_app(store, interval=...)`` with uvicorn on a loopback port;
4. for each page count N: N clients, each reloading a page the way an open page's
   script does (one GET every ``--interval`` seconds, taking turns through the queues,
   workers, failures and owners pages), all for ``--seconds``; the server's
   ``INFO commandstats`` is read before and after, and the difference (less the INFO
   calls themselves) divided by the time is the figure. Commands run inside a script
   count too (Redis counts them in commandstats), so "commands" is everything the
   server executed; "scripts" are the EVALSHA calls among them, and "refreshes" the
   times the dashboard read the store.

Nothing else uses the server meanwhile: no worker runs, so the figures are the
dashboard's alone.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio
import httpx
import redis
import uvicorn

import taskstore_redis.asyncio as ts
from taskstore_redis.dashboard import create_app
from taskstore_redis.testing import redis_server

PAGES = ("/", "/workers", "/failures", "/owners")
SCRIPTED = ("evalsha", "eval", "fcall")


def commandstats(url: str) -> dict[str, int]:
    """Calls per command so far on the server at ``url``."""
    with redis.Redis.from_url(url) as client:
        stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(one["calls"]) for name, one in stats.items()}


async def fill(store: ts.GenericTaskStore, queues: int) -> None:
    for number in range(queues):
        queue = f"queue-{number}"
        for task in range(40):
            await store.submit(
                "tools/call", {"n": task}, owner_id=f"owner-{task % 20}", queue=queue
            )
        for worker in range(2):
            await store.claim_many(queue, 5, lease_ms=3_600_000, timeout=0, worker_id=f"w-{worker}")


async def viewer(client: httpx.AsyncClient, index: int, interval: float, until: float) -> int:
    """Reload a page every ``interval`` seconds until ``until``; return the requests made."""
    made = 0
    await anyio.sleep(interval * (index % 97) / 97)  # pages opened at different moments
    while time.monotonic() < until:
        reply = await client.get(PAGES[(index + made) % len(PAGES)])
        reply.raise_for_status()
        made += 1
        await anyio.sleep(interval)
    return made


async def measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    store = ts.GenericTaskStore.from_url(url)
    await fill(store, args.queues)
    app = create_app(store, interval=args.interval)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    rows = []
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: server.serve(sockets=[sock]))
        limits = httpx.Limits(max_connections=1000)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as client:
            while not server.started:
                await anyio.sleep(0.05)
            await client.get("/")  # warm: templates compiled, scripts loaded
            for pages in args.pages:
                before = commandstats(url)
                refreshed = app.state.dashboard.collector.refreshes
                started = time.monotonic()
                until = started + args.seconds
                counts: list[int] = []

                async def one(index: int, counts: list[int] = counts, until: float = until) -> None:
                    counts.append(await viewer(client, index, args.interval, until))

                async with anyio.create_task_group() as viewers:
                    for index in range(pages):
                        viewers.start_soon(one, index)
                elapsed = time.monotonic() - started
                after = commandstats(url)
                delta = {
                    name: after.get(name, 0) - before.get(name, 0)
                    for name in after
                    if name != "info" and after.get(name, 0) != before.get(name, 0)
                }
                rows.append(
                    {
                        "pages": pages,
                        "seconds": round(elapsed, 2),
                        "page_loads_per_s": round(sum(counts) / elapsed, 2),
                        "commands_per_s": round(sum(delta.values()) / elapsed, 1),
                        "scripts_per_s": round(
                            sum(delta.get(name, 0) for name in SCRIPTED) / elapsed, 1
                        ),
                        "by_command": dict(sorted(delta.items(), key=lambda item: -item[1])),
                        "refreshes": app.state.dashboard.collector.refreshes - refreshed,
                    }
                )
                print(
                    f"{pages:>4} page(s): {rows[-1]['page_loads_per_s']:>7.2f} page loads/s, "
                    f"{rows[-1]['commands_per_s']:>7.1f} Redis commands/s "
                    f"({rows[-1]['scripts_per_s']:.1f} scripts/s), "
                    f"{rows[-1]['refreshes']} refreshes",
                    flush=True,
                )
        server.should_exit = True
    await store.aclose()
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--queues", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with redis_server() as server:
        rows = anyio.run(measure, server.url, args)
    if args.json is not None:
        settings = {key: value for key, value in vars(args).items() if key != "json"}
        args.json.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
