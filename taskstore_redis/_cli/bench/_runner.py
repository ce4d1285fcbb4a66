"""Run one side of one scenario: set up, wait for the start, time every operation.

A *job* is what one process does for a scenario. In-process layouts run their
job in the bench's own process; worker layouts hand one job to each of N
spawned worker processes, which set up, report ready, and start their timed
work together when the parent says go.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import anyio
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from ..._async._memory import InMemoryBackend
from ..._async._redis import RedisBackend
from ..._async._store import GenericTaskStore
from ..._core.config import SecurityConfig, StoreConfig
from ..._redis.keys import KeySchema
from ._settings import MUTATIONS
from ._stats import Timings
from ._workload import BenchError, RawSide, Side, StoreSide, owner_of

_CACHE_MARGIN = 64
_CLIENT_OPTIONS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
"""The defaults of ``RedisBackend.from_url``, given to the raw client too."""
_SETUP_TIMEOUT_S = 600.0
"""Longest a worker may take to set its tasks up."""
_RUN_MARGIN_S = 60.0
"""Longest a worker may run past its scenario's duration (a stuck call times out in 5 s)."""
_IDLE_TIMEOUT_S = 3600.0
"""A worker that hears nothing for this long exits."""
_POLL_S = 1.0
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Target:
    """Where a job runs: a Redis URL (None: a fresh InMemoryBackend) and how to talk to it."""

    url: str | None
    cluster: bool
    prefix: str
    auto_pipeline: bool


@dataclass(frozen=True)
class JobSpec:
    """One process's share of one side of one scenario."""

    target: Target
    operation: str
    side: str
    """``store`` or ``raw``."""
    lanes: int
    first_lane: int
    ops_per_lane: int
    tasks_per_lane: int
    duration_s: float
    page_size: int
    remember: bool = True
    """Whether the store side is made to remember the tasks before mutating them."""


def raw_client(target: Target, **extra: Any) -> Any:
    """A ``redis.asyncio`` client built as the store's backend builds its own."""
    if target.url is None:
        raise BenchError("the raw baseline needs Redis")
    options = {**_CLIENT_OPTIONS, **extra}
    if target.cluster:
        return redis.asyncio.RedisCluster.from_url(target.url, **options)
    return redis.asyncio.Redis.from_url(
        target.url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **options
    )


def open_side(spec: JobSpec, **extra: Any) -> Side:
    """The store side or the raw side of ``spec``; ``extra`` goes to the redis-py clients."""
    target = spec.target
    if spec.side == "raw":
        return RawSide(
            raw_client(target, **extra),
            spec.operation,
            keys=KeySchema(target.prefix),
            page_size=spec.page_size,
            auto_pipeline=target.auto_pipeline,
        )
    remembered = spec.lanes * spec.tasks_per_lane + _CACHE_MARGIN
    config = StoreConfig(record_cache_size=max(StoreConfig().record_cache_size, remembered))
    security = SecurityConfig(max_tasks_per_owner=None)
    if target.url is None:
        store = GenericTaskStore(InMemoryBackend(), config, security)
        return StoreSide(
            store,
            spec.operation,
            page_size=spec.page_size,
            setup_client=None,
            keys=None,
            remember=True,
        )
    backend = RedisBackend.from_url(
        target.url,
        cluster=target.cluster,
        prefix=target.prefix,
        auto_pipeline=target.auto_pipeline,
        **extra,
    )
    return StoreSide(
        GenericTaskStore(backend, config, security),
        spec.operation,
        page_size=spec.page_size,
        setup_client=raw_client(target),
        keys=KeySchema(target.prefix),
        remember=spec.remember and spec.operation in MUTATIONS,
    )


async def run_job(
    spec: JobSpec, wait_for_start: Callable[[], None], **client_extra: Any
) -> Timings:
    """Set up, warm up, call ``wait_for_start``, then time the operations of every lane."""
    side = open_side(spec, **client_extra)
    try:
        owners = [owner_of(spec.first_lane + lane) for lane in range(spec.lanes)]
        await side.setup(owners, spec.tasks_per_lane)
        async with anyio.create_task_group() as group:
            for _ in range(spec.lanes):
                group.start_soon(side.warm)
        wait_for_start()
        return await drive(side, spec.lanes, spec.ops_per_lane, spec.duration_s)
    finally:
        with anyio.CancelScope(shield=True):
            await side.aclose()


async def drive(side: Side, lanes: int, ops_per_lane: int, duration_s: float) -> Timings:
    """Run ``lanes`` concurrent callers, each up to ``ops_per_lane`` operations or the deadline.

    The latency of an operation is the wall time of its ``await``, as its caller
    sees it (waiting for a shared pipeline included).
    """
    latencies: list[int] = []
    clock = time.perf_counter_ns
    started = time.monotonic()
    deadline = started + duration_s

    async def caller(lane: int) -> None:
        for n in range(ops_per_lane):
            if time.monotonic() >= deadline:
                return
            before = clock()
            await side.op(lane, n)
            latencies.append(clock() - before)

    async with anyio.create_task_group() as group:
        for lane in range(lanes):
            group.start_soon(caller, lane)
    return Timings(
        ops=len(latencies), started=started, finished=time.monotonic(), latencies_ns=latencies
    )


def run_in_process(spec: JobSpec) -> Timings:
    """Run a job in this process, starting as soon as it is set up."""
    return anyio.run(run_job, spec, lambda: None)


# --- worker processes --------------------------------------------------------------------


class WorkerPool:
    """Spawned worker processes that run jobs in lock step: all set up, then all start."""

    def __init__(self, size: int) -> None:
        """Start ``size`` workers (spawn context: nothing is inherited but the arguments)."""
        context = multiprocessing.get_context("spawn")
        self._outbox: Any = context.Queue()
        self._inboxes: list[Any] = [context.Queue() for _ in range(size)]
        self._jobs = itertools.count()
        self._processes: list[BaseProcess] = []
        try:
            for index, inbox in enumerate(self._inboxes):
                process = context.Process(
                    target=worker_main,
                    args=(index, inbox, self._outbox, os.getpid()),
                    name=f"taskstore-bench-{index}",
                    daemon=True,
                )
                process.start()
                self._processes.append(process)
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        """How many workers the pool has."""
        return len(self._inboxes)

    def run(self, specs: list[JobSpec]) -> list[Timings]:
        """Give ``specs[i]`` to worker ``i``; start them together; return their timings."""
        if len(specs) > self.size:
            raise BenchError(f"{len(specs)} jobs for {self.size} workers")
        job = next(self._jobs)
        for inbox, spec in zip(self._inboxes, specs, strict=False):
            inbox.put(("job", job, spec))
        self._collect(job, "ready", len(specs), _SETUP_TIMEOUT_S)
        for inbox in self._inboxes[: len(specs)]:
            inbox.put(("go", job))
        timeout = max(spec.duration_s for spec in specs) + _RUN_MARGIN_S
        replies = self._collect(job, "done", len(specs), timeout)
        return [replies[index] for index in range(len(specs))]

    def _collect(self, job: int, kind: str, count: int, timeout: float) -> dict[int, Any]:
        deadline = time.monotonic() + timeout
        replies: dict[int, Any] = {}
        while len(replies) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"worker processes did not report {kind} within {timeout:g} s")
            try:
                message = self._outbox.get(timeout=_POLL_S)
            except queue.Empty:
                self._check_alive()
                continue
            reply_kind, reply_job, index, payload = message
            if reply_job != job:
                continue
            if reply_kind == "error":
                raise BenchError(f"worker process {index} failed:\n{payload}")
            if reply_kind == kind:
                replies[index] = payload
        return replies

    def _check_alive(self) -> None:
        for process in self._processes:
            if process.exitcode is not None:
                raise BenchError(f"worker {process.name} exited with code {process.exitcode}")

    def close(self) -> None:
        """Ask every worker to stop; terminate those that do not within a few seconds."""
        for inbox in self._inboxes:
            with contextlib.suppress(OSError, ValueError):
                inbox.put(None)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for process in self._processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=_STOP_TIMEOUT_S)
        for channel in [*self._inboxes, self._outbox]:
            channel.cancel_join_thread()  # never block on a pipe nobody reads any more
            channel.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def worker_main(index: int, inbox: Any, outbox: Any, parent_pid: int) -> None:
    """The loop of a worker process: run each job it is given until told to stop.

    Ctrl-C is left to the parent, which stops the workers; a worker whose parent
    is gone, or that hears nothing for an hour, exits on its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    idle_deadline = time.monotonic() + _IDLE_TIMEOUT_S
    while time.monotonic() < idle_deadline and os.getppid() == parent_pid:
        try:
            message = inbox.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if message is None:
            return
        _, job, spec = message
        try:
            timings = anyio.run(run_job, spec, _start_signal(index, job, inbox, outbox))
        except BaseException:
            outbox.put(("error", job, index, traceback.format_exc()))
        else:
            outbox.put(("done", job, index, timings))
        idle_deadline = time.monotonic() + _IDLE_TIMEOUT_S


def _start_signal(index: int, job: int, inbox: Any, outbox: Any) -> Callable[[], None]:
    """Report ready, then block until the parent says go (or give up)."""

    def wait() -> None:
        outbox.put(("ready", job, index, None))
        try:
            message = inbox.get(timeout=_SETUP_TIMEOUT_S)
        except queue.Empty:
            raise BenchError("no start signal from the parent") from None
        if message != ("go", job):
            raise BenchError(f"expected the start of job {job}, got {message!r}")

    return wait
