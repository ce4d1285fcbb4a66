"""Blocking waits that time out in many threads at once leave nothing registered.

The blocking store's waiters share one subscription per process through a
listener thread; this is the one wait test with no async twin. The races both
stores share are in tests/_async/test_wait_races.py (and its generated twin).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import taskstore_redis as ts
from taskstore_redis import WaitTimeout
from tests._sync.test_wait_races import METHOD, OWNER, registrations

StoreFactory = Callable[..., ts.GenericTaskStore]


def test_waits_that_time_out_in_many_threads_leave_nothing_registered(
    sync_make_store: StoreFactory,
) -> None:
    store = sync_make_store()
    task_ids = [store.create(METHOD, owner_id=OWNER).task.task_id for _ in range(5)]

    def wait(n: int) -> str:
        try:
            store.wait(task_ids[n % 5], owner_id=OWNER, timeout=0.001)
        except WaitTimeout:
            return "timeout"
        return "returned"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(wait, range(2_000)))
    assert outcomes == ["timeout"] * 2_000
    assert registrations(store) == 0
