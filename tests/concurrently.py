"""Running test code at the same time: async in an anyio task group, blocking in threads.

A race written once in ``tests/_async/`` calls the ``async_*`` helpers here;
scripts/unasync.py turns each name into its ``sync_*`` twin (``async_x`` becomes
``sync_x``), so the blocking test runs the same race in threads. Every wait here is
bounded by ``GUARD``: a lost wakeup fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

GUARD = 30.0
"""The longest any helper waits for the others."""

Spawn = Callable[..., Any]
"""``spawn(function, *args)``: start ``function(*args)`` in the background."""


async def async_together(jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs as tasks of one task group; return their results in order."""
    results: dict[int, T] = {}

    async def run(number: int, job: Callable[[], Awaitable[T]]) -> None:
        results[number] = await job()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            for number, job in enumerate(jobs):
                group.start_soon(run, number, job)
    return [results[number] for number in range(len(jobs))]


def sync_together(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run the jobs in threads released together by a barrier; return their results in order.

    The barrier makes their reads and writes really interleave.
    """
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], T]) -> T:
        barrier.wait(timeout=GUARD)
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [future.result(timeout=GUARD) for future in futures]


@asynccontextmanager
async def async_background() -> AsyncIterator[Spawn]:
    """Start functions in the background; on leaving, wait until all of them returned."""
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as group:
            yield group.start_soon


@contextmanager
def sync_background() -> Iterator[Spawn]:
    """Start functions in threads of their own; on leaving, join them and raise the first error."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def spawn(function: Callable[..., Any], *args: Any) -> None:
        def run() -> None:
            try:
                function(*args)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()

    try:
        yield spawn
    finally:
        for thread in threads:
            thread.join(GUARD)
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"a background thread still runs after {GUARD} s")
    if errors:
        raise errors[0]


class AsyncCounter:
    """Counts calls (awaited from tasks); ``all_in()`` returns once ``expected`` came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.event = anyio.Event()

    async def __call__(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.event.set()

    async def all_in(self) -> None:
        with anyio.fail_after(GUARD):
            await self.event.wait()


class SyncCounter:
    """Counts calls (made from threads); ``all_in()`` returns once ``expected`` came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1
            if self.count == self.expected:
                self.event.set()

    def all_in(self) -> None:
        if not self.event.wait(GUARD):
            raise TimeoutError(f"{self.count} of {self.expected} calls after {GUARD} s")


def async_counter(expected: int) -> AsyncCounter:
    """A counter of ``expected`` calls, for tasks."""
    return AsyncCounter(expected)


def sync_counter(expected: int) -> SyncCounter:
    """A counter of ``expected`` calls, for threads."""
    return SyncCounter(expected)
