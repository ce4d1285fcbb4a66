"""The store's own CPU per call: the blocking store on InMemoryBackend, no I/O.

``python benchmarks/store_cpu.py`` prints, for each call, the CPU time
(``time.process_time()``) per call, best of 5 loops: ``get``, ``update_status``,
``set_variables`` on 8 tasks in turn, and a first page of 50 of an owner with 100
tasks, remembered or never seen (``record_cache_size=0``).
``python benchmarks/store_cpu.py CALL`` also prints a cProfile of CALL.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from collections.abc import Callable

from taskstore_redis import GenericTaskStore, InMemoryBackend, SecurityConfig, StoreConfig

OWNER = "owner-0000000001"
_STATUSES = ("input_required", "working")


def _store(cache: int) -> tuple[GenericTaskStore, list[str]]:
    store = GenericTaskStore(
        InMemoryBackend(),
        StoreConfig(record_cache_size=cache),
        SecurityConfig(max_tasks_per_owner=None),
    )
    ids = [store.create("tools/call", owner_id=OWNER).task.task_id for _ in range(100)]
    for task_id in ids[:8]:
        store.set_variables(task_id, {"progress": 0}, owner_id=OWNER)
    store.list(owner_id=OWNER, limit=50)
    return store, ids


def _per_call(call: Callable[[int], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for n in range(calls):
            call(n)
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


def main() -> None:
    store, ids = _store(1024)
    unseen, _ = _store(0)
    calls: dict[str, tuple[Callable[[int], object], int]] = {
        "get": (lambda n: store.get(ids[n % 8], owner_id=OWNER), 20_000),
        "update_status": (
            lambda n: store.update_status(ids[n % 8], _STATUSES[n // 8 % 2], owner_id=OWNER),
            20_000,
        ),
        "set_variables": (
            lambda n: store.set_variables(ids[n % 8], {"progress": n}, owner_id=OWNER),
            20_000,
        ),
        "list_remembered": (lambda n: store.list(owner_id=OWNER, limit=50), 2_000),
        "list_unseen": (lambda n: unseen.list(owner_id=OWNER, limit=50), 1_000),
    }
    for name, (call, count) in calls.items():
        print(f"{name:16} {_per_call(call, count):8.2f} µs")
    if len(sys.argv) > 1:
        call, count = calls[sys.argv[1]]
        profile = cProfile.Profile()
        profile.enable()
        for n in range(count):
            call(n)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
