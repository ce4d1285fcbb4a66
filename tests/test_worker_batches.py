"""``run_worker`` on the async store shares round trips: jobs that finish together, one call.

Async handlers that return in the same turn of the event loop are completed in one
call per shard (``complete_and_claim``), which claims their successors too. A
blocking worker batches as its handlers' threads happen to return, so this exact
count is specified for the async worker only; what both flavours do (every
completion rides a round, no round claims past the slots it frees) is in
tests/_async/test_worker_loop.py, whose helpers these tests use.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import taskstore_redis.asyncio as ts
from tests._async.test_worker_loop import (
    BackendCalls,
    Flag,
    submit_many,
    until_terminal,
    with_worker,
)
from tests.concurrently import async_counter

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., ts.GenericTaskStore]


async def test_handlers_that_finish_together_are_completed_in_one_call_that_claims_successors(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    ids = await submit_many(store, 12)  # one owner: one shard of the queue
    calls = BackendCalls(store)
    first_six = async_counter(6)

    async def together(lease: ts.Lease) -> str:
        if int(lease.params["n"]) < 6:
            await first_six()
            await first_six.all_in()  # the first six return in the same turn of the loop
        return "ok"

    async def body(_: Flag) -> None:
        await until_terminal(store, ids)

    stats = await with_worker(store, together, body, concurrency=6)
    assert stats.completed == 12
    assert calls.rounds[0] == (6, 6, 6)  # six completions, six successors, one round trip
    assert calls.lone_completions == 0
