"""A waiting claim outlives a restart of its Redis server (async; the restart runs in a thread).

The races both stores share are in tests/_async/test_queue_races.py (and its
generated twin).
"""

from __future__ import annotations

import anyio
import pytest

import taskstore_redis.asyncio as ats
from taskstore_redis.testing import redis_server

OWNER = "alice"
METHOD = "tools/call"


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_waiting_claim_outlives_a_server_restart_and_takes_work_submitted_after_it(
    key_prefix: str,
) -> None:
    with redis_server() as server:
        worker = ats.GenericTaskStore.from_url(server.url, prefix=key_prefix)
        client = ats.GenericTaskStore.from_url(server.url, prefix=key_prefix)
        async with worker, client:
            assert await worker.claim("restart", timeout=0) is None
            got: list[ats.Lease | None] = []

            async def wait_for_work() -> None:
                got.append(await worker.claim("restart", timeout=60))

            async with anyio.create_task_group() as group:
                group.start_soon(wait_for_work)
                await anyio.sleep(0.2)
                await anyio.to_thread.run_sync(server.restart)
                await anyio.sleep(0.5)
                record = await client.submit(METHOD, "after", owner_id=OWNER, queue="restart")
            assert got[0] is not None and got[0].task_id == record.task.task_id
