"""The loop of ``run_worker``, written once for the async and the blocking store.

The loop is async (anyio). With an async store it awaits the store directly; with a
blocking store, :func:`sync_run_worker` runs the same loop in an event loop of its
own and sends every store call to a worker thread, so the blocking API gets the
same behaviour without a second implementation. Handlers may be sync (run in a
worker thread) or async (awaited on the loop).

What the loop does:

- claims up to as many tasks as it has free slots, in one ``claim_many`` call;
- runs ``handler(lease)`` for each; its return value completes the task as
  ``completed`` with that result. Completions travel in batches: one call per shard
  of the queue (``_complete_and_claim``) completes every job that finished there since
  the last call, each under its own lease, and claims as many tasks of that shard to
  take their places, in one round trip. A completion that call could not judge is
  sent alone; one whose call went unanswered is sent again alone (never applied
  twice: each write carries its own token);
- renews every lease it holds in one ``renew_leases`` call per interval (a third
  of the lease); a lease found lost (expired and reclaimed, cancelled, ended by
  someone else) stops its handler and is abandoned quietly (logged);
- a handler that raises: the task is released with an exponential, jittered delay
  for another attempt, or, on its last attempt, completed ``failed`` with the
  exception's message;
- a store that does not answer costs no attempt: the leases' writes (the handler's
  own through its lease, and the completion) are sent again, with backoff, for as
  long as the lease holds (see ``Lease``); only a lease that runs out meanwhile is
  lost (the worker stops working on it, and its recovery counts that attempt);
- now and then sweeps the queue's expired leases (``recover_leases``), so recovery
  never depends on one process;
- on stop (``stop`` set, SIGTERM, or cancellation) it claims no more, lets the
  running handlers finish within ``grace_s``, then stops the rest and releases what
  it still holds, handing their attempts back (``count_attempt=False``: not counted).

With OpenTelemetry installed (the ``otel`` extra) it also counts the queue's completed,
failed, recovered and lost tasks, times each handler call, and, while it runs, reports
its queue's ready, delayed and leased gauges (see ``_runtime/metrics.py``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ._core.errors import InvalidArgument, LeaseLost, StoreUnavailable, TaskStoreError
from ._core.shown import printable
from ._core.status import TaskStatus
from ._core.worker_rules import (
    MAX_MESSAGE_LENGTH,
    WorkerSettings,
    delay_limit_ms,
    failure_message,
    failure_result,
    out_of_attempts,
    retry_delay_ms,
)
from ._runtime import metrics

logger = logging.getLogger("taskstore_redis.worker")

Handler = Callable[[Any], Any]
"""``handler(lease)``: a sync or async function; what it returns is the task's result."""

_PAUSE_FIRST_S = 0.05
_PAUSE_MAX_S = 2.0
_STOP_CHECK_S = 0.05


class StopFlag(Protocol):
    """Anything with ``is_set()``: an ``anyio.Event``, a ``threading.Event``."""

    def is_set(self) -> bool:
        """Whether the worker should stop."""
        ...


@dataclass
class WorkerStats:
    """What one ``run_worker`` call did, returned when it stops."""

    claimed: int = 0
    """Leases taken."""
    completed: int = 0
    """Tasks completed with the handler's result."""
    failed: int = 0
    """Tasks failed after the handler raised on their last attempt."""
    retried: int = 0
    """Tasks released for another attempt after the handler raised."""
    lost: int = 0
    """Leases found lost (expired, reclaimed, cancelled, ended by someone else): abandoned."""
    released: int = 0
    """Leases handed back unfinished at shutdown."""
    recovered: int = 0
    """Expired leases the worker's sweeps put back in the queue."""
    errors: list[str] = field(default_factory=list)
    """The first store errors met (the loop carried on after each)."""

    def error(self, what: str, exc: BaseException) -> None:
        """Log a store error the loop carries on after; keep the first few."""
        line = f"{printable(what)}: {type(exc).__name__}: {printable(str(exc))}"
        logger.warning("%s", line)
        if len(self.errors) < 20:
            self.errors.append(line)


class _Ops(Protocol):
    """The store operations the loop needs, awaitable whatever the store's flavour."""

    lease_ms: int
    message_limit: int
    delay_limit_ms: int

    async def claim(self, count: int, timeout: float) -> list[Any]: ...

    async def renew(self, leases: Sequence[Any]) -> list[str]: ...

    async def recover(self) -> int: ...

    batches: bool
    """Whether the store completes and claims in one call (``complete_and_claim``)."""

    async def complete(
        self,
        lease: Any,
        status: TaskStatus,
        message: str | None,
        result: Any,
        *,
        sent_before: bool = False,
    ) -> None: ...

    async def complete_and_claim(
        self, shard: int, finished: list[tuple[Any, Any]], count: int
    ) -> tuple[list[Any], list[Any]]: ...

    async def release(self, lease: Any, delay_ms: int, *, count_attempt: bool = True) -> None: ...

    async def call(self, handler: Handler, lease: Any, is_async: bool) -> Any:
        """Run ``handler(lease)``: awaited if ``is_async``, else in a worker thread."""
        ...

    def stats_reader(self) -> metrics.QueueReader:
        """Reads the queue's stats from any thread (for the gauges); made on the loop."""
        ...

    async def serve_schedules(self) -> None:
        """Fire the store's schedules until cancelled (at once back if it keeps none)."""
        ...


def _lost_reasons(outcomes: Any, count: int) -> list[str]:
    """Per lease, why its renewal was refused ("" when it was renewed)."""
    reasons: list[str] = []
    for outcome in outcomes:
        if isinstance(outcome, LeaseLost):
            reasons.append(outcome.reason)
        elif isinstance(outcome, BaseException):
            reasons.append(f"{type(outcome).__name__}: {outcome}")
        else:
            reasons.append(str(getattr(outcome, "lease_lost", "") or ""))
    if len(reasons) != count:
        raise TaskStoreError(f"renew_leases answered {len(reasons)} outcomes for {count} leases")
    return reasons


def _lease_ms(store: Any, settings: WorkerSettings) -> int:
    if settings.lease_ms is not None:
        return settings.lease_ms
    return int(store.config.default_lease_ms)


def _message_limit(store: Any) -> int:
    return min(MAX_MESSAGE_LENGTH, int(store.config.max_string_length))


def _keeps_schedules(store: Any) -> bool:
    """Whether the store fires schedules (its backend keeps them)."""
    keeps = getattr(store, "_keeps_schedules", None)
    return callable(keeps) and bool(keeps())


def _batches(store: Any) -> bool:
    """Whether ``store`` completes and claims in one call (a store wrapper may not)."""
    return callable(getattr(store, "_complete_and_claim", None))


def _max_attempts(lease: Any) -> int:
    job = getattr(lease.task, "job", None)
    return int(job.max_attempts) if job is not None else 1


class _AsyncOps:
    """The loop's operations on an async store."""

    def __init__(self, store: Any, settings: WorkerSettings, limiter: anyio.CapacityLimiter):
        self.store = store
        self.settings = settings
        self.lease_ms = _lease_ms(store, settings)
        self.message_limit = _message_limit(store)
        self.delay_limit_ms = delay_limit_ms(store.config)
        self.limiter = limiter
        self.batches = _batches(store)

    async def claim(self, count: int, timeout: float) -> list[Any]:
        s = self.settings
        leases = await self.store.claim_many(
            s.queue, count, lease_ms=self.lease_ms, timeout=timeout, worker_id=s.worker_id
        )
        return list(leases)

    async def renew(self, leases: Sequence[Any]) -> list[str]:
        outcomes = await self.store.renew_leases(list(leases), lease_ms=self.lease_ms)
        return _lost_reasons(outcomes, len(leases))

    async def recover(self) -> int:
        return int(await self.store.recover_leases(self.settings.queue))

    async def complete(
        self,
        lease: Any,
        status: TaskStatus,
        message: str | None,
        result: Any,
        *,
        sent_before: bool = False,
    ) -> None:
        if sent_before:
            await lease._complete(status, message, result, sent_before=True)
        else:
            await lease.complete(status, message, result)

    async def complete_and_claim(
        self, shard: int, finished: list[tuple[Any, Any]], count: int
    ) -> tuple[list[Any], list[Any]]:
        s = self.settings
        outcomes, leases = await self.store._complete_and_claim(
            s.queue, shard, finished, count, self.lease_ms, s.worker_id
        )
        return list(outcomes), list(leases)

    async def release(self, lease: Any, delay_ms: int, *, count_attempt: bool = True) -> None:
        await lease.release(delay_ms=delay_ms, count_attempt=count_attempt)

    async def call(self, handler: Handler, lease: Any, is_async: bool) -> Any:
        if is_async:
            return await handler(lease)
        value = await anyio.to_thread.run_sync(
            handler, lease, abandon_on_cancel=True, limiter=self.limiter
        )
        return await value if inspect.isawaitable(value) else value

    async def serve_schedules(self) -> None:
        if _keeps_schedules(self.store):
            await self.store._serve_schedules(None)

    def stats_reader(self) -> metrics.QueueReader:
        token = anyio.lowlevel.current_token()
        loop_thread = threading.get_ident()
        queue = self.settings.queue

        async def read() -> Any:
            with anyio.fail_after(metrics.GAUGE_READ_TIMEOUT_S):
                return await self.store.queue_stats(queue)

        def from_any_thread() -> Any:
            if threading.get_ident() == loop_thread:
                return None  # collected on the loop itself: it cannot wait for its own loop
            return anyio.from_thread.run(read, token=token)

        return from_any_thread


class _SyncOps:
    """The loop's operations on a blocking store: each call in a worker thread."""

    def __init__(self, store: Any, settings: WorkerSettings, limiter: anyio.CapacityLimiter):
        self.store = store
        self.settings = settings
        self.lease_ms = _lease_ms(store, settings)
        self.message_limit = _message_limit(store)
        self.delay_limit_ms = delay_limit_ms(store.config)
        self.limiter = limiter
        self.batches = _batches(store)

    async def _run(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(
            functools.partial(call, *args, **kwargs), limiter=self.limiter
        )

    async def claim(self, count: int, timeout: float) -> list[Any]:
        s = self.settings
        leases = await self._run(
            self.store.claim_many,
            s.queue,
            count,
            lease_ms=self.lease_ms,
            timeout=timeout,
            worker_id=s.worker_id,
        )
        return list(leases)

    async def renew(self, leases: Sequence[Any]) -> list[str]:
        outcomes = await self._run(self.store.renew_leases, list(leases), lease_ms=self.lease_ms)
        return _lost_reasons(outcomes, len(leases))

    async def recover(self) -> int:
        return int(await self._run(self.store.recover_leases, self.settings.queue))

    async def complete(
        self,
        lease: Any,
        status: TaskStatus,
        message: str | None,
        result: Any,
        *,
        sent_before: bool = False,
    ) -> None:
        if sent_before:
            await self._run(lease._complete, status, message, result, sent_before=True)
        else:
            await self._run(lease.complete, status, message, result)

    async def complete_and_claim(
        self, shard: int, finished: list[tuple[Any, Any]], count: int
    ) -> tuple[list[Any], list[Any]]:
        s = self.settings
        outcomes, leases = await self._run(
            self.store._complete_and_claim,
            s.queue,
            shard,
            finished,
            count,
            self.lease_ms,
            s.worker_id,
        )
        return list(outcomes), list(leases)

    async def release(self, lease: Any, delay_ms: int, *, count_attempt: bool = True) -> None:
        await self._run(lease.release, delay_ms=delay_ms, count_attempt=count_attempt)

    async def call(self, handler: Handler, lease: Any, is_async: bool) -> Any:
        if is_async:
            return await handler(lease)
        return await anyio.to_thread.run_sync(
            handler, lease, abandon_on_cancel=True, limiter=self.limiter
        )

    async def serve_schedules(self) -> None:
        if not _keeps_schedules(self.store):
            return
        # a thread of its own, told to stop and waited for when the worker stops
        stop = threading.Event()
        thread = threading.Thread(
            target=self.store._serve_schedules, args=(stop,), name="schedules", daemon=True
        )
        thread.start()
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)

    def stats_reader(self) -> metrics.QueueReader:
        return functools.partial(self.store.queue_stats, self.settings.queue)


@dataclass(eq=False)
class _Job:
    lease: Any
    scope: anyio.CancelScope | None = None
    lost: str = ""
    abandoned: bool = False
    ending: bool = False
    """Its last write (complete, fail, release) was sent: a renewal refused from then on was
    refused because of that write, or that write is refused too and says so itself."""
    handler_s: float | None = None
    """How long the handler ran (None: it was not called)."""
    outcome: str = "stopped"
    """How the attempt ended, for the handler-duration histogram."""


_UNANSWERED = object()
"""A batched completion's outcome when its call was not answered: unknown."""


@dataclass(eq=False)
class _Finish:
    """A job whose handler returned: its completion waits for the next batch of its shard."""

    job: _Job
    value: Any
    done: anyio.Event
    """Set once the batch it went in is back (one event for all the batch's jobs)."""
    outcome: Any = False
    """True (completed), the error of a lease found lost, False (not judged: sent alone),
    or ``_UNANSWERED``."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _key(lease: Any) -> tuple[str, str]:
    return (str(lease.owner_id), str(lease.task_id))


def _hold(lease: Any, until: float | None) -> None:
    """Let the lease send its writes again while the store does not answer, until ``until``."""
    hold = getattr(lease, "_hold", None)
    if hold is not None:
        hold(until)


def _traceback(exc: BaseException) -> str:
    """The exception's traceback, every line with its control characters escaped."""
    text = "".join(traceback.format_exception(exc))
    return "\n".join(printable(line) for line in text.splitlines())


class _Worker:
    def __init__(
        self,
        ops: _Ops,
        handler: Handler,
        settings: WorkerSettings,
        stop: StopFlag | None,
        handle_signals: bool,
    ) -> None:
        self.ops = ops
        self.handler = handler
        self.handler_is_async = inspect.iscoroutinefunction(handler)
        self.settings = settings
        self.stop_flag = stop
        self.handle_signals = handle_signals
        self.held: dict[tuple[str, str], _Job] = {}
        self.stopping = False
        self.stats = WorkerStats()
        self.meter = metrics.queue_instruments()
        self._changed = anyio.Event()
        self.finishing: dict[int, list[_Finish]] = {}
        """Per shard, the completions waiting for the next batch."""
        self._finished = anyio.Event()
        self.handlers: anyio.abc.TaskGroup | None = None

    # -- wake-ups ---------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake the waits on the worker's state (a free slot, a stop, the drain)."""
        if self.stopping or len(self.held) < self.settings.concurrency:
            self._changed.set()
            self._changed = anyio.Event()

    def stop(self) -> None:
        if not self.stopping:
            logger.info("worker on queue %s stopping", printable(repr(self.settings.queue)))
            self.stopping = True
            self._notify()

    # -- the parts --------------------------------------------------------------------------

    def _count(self, counter: str, amount: int = 1) -> None:
        if self.meter is not None:
            self.meter.count(counter, self.settings.queue, amount)

    async def serve(self) -> WorkerStats:
        gauges = metrics.queue_gauges()
        unwatch = gauges.watch(self.settings.queue, self.ops.stats_reader()) if gauges else None
        try:
            return await self._serve()
        finally:
            if unwatch is not None:
                unwatch()

    async def _serve(self) -> WorkerStats:
        renewer = anyio.CancelScope(shield=True)
        flusher = anyio.CancelScope(shield=True)
        async with anyio.create_task_group() as handlers:
            self.handlers = handlers
            handlers.start_soon(self._in_scope, renewer, self._renew_loop)
            handlers.start_soon(self._in_scope, flusher, self._flush_loop)
            try:
                async with anyio.create_task_group() as side:
                    side.start_soon(self._sweep_loop)
                    side.start_soon(self._watch_stop)
                    if self.settings.schedules:
                        side.start_soon(self._schedule_loop)
                    if self.handle_signals and _in_main_thread():
                        side.start_soon(self._watch_signals)
                    await self._claim_loop(handlers)
                    side.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._drain()
                    renewer.cancel()
                    flusher.cancel()
        return self.stats

    @staticmethod
    async def _in_scope(scope: anyio.CancelScope, run: Callable[[], Awaitable[None]]) -> None:
        with scope:
            await run()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the worker is told to stop."""
        with anyio.move_on_after(seconds):
            while not self.stopping:
                await self._changed.wait()

    async def _claim_loop(self, handlers: anyio.abc.TaskGroup) -> None:
        pause = _PAUSE_FIRST_S
        while not self.stopping:
            free = self.settings.concurrency - len(self.held)
            if free <= 0:
                await self._changed.wait()
                continue
            try:
                leases = await self.ops.claim(free, self.settings.idle_wait_s)
            except Exception as exc:  # the store unreachable (or worse): log, pause, go on
                self.stats.error("claim", exc)
                await self._pause(pause)
                pause = min(pause * 2, _PAUSE_MAX_S)
                continue
            pause = _PAUSE_FIRST_S
            self._start(leases, handlers)

    def _start(self, leases: list[Any], handlers: anyio.abc.TaskGroup) -> None:
        """Hold the leases just claimed and run the handler on each."""
        held_until = time.monotonic() + self.ops.lease_ms / 1000
        for lease in leases:
            _hold(lease, held_until)
            job = _Job(lease)
            self.held[_key(lease)] = job
            self.stats.claimed += 1
            handlers.start_soon(self._run, job)

    async def _flush_loop(self) -> None:
        """Send the waiting completions in rounds: one call per shard, all at once.

        A round goes as soon as the last one is back (and the handlers it started had
        their turn), so the jobs that finish meanwhile travel together. Only the round's
        busiest shard claims, for every job the round completes: a worker's jobs stay on
        few shards, not spread thinner at each shard it empties.
        """
        while True:
            if not self.finishing:
                await self._finished.wait()
                self._finished = anyio.Event()
                continue
            await anyio.lowlevel.checkpoint()  # the handlers the last round started go first
            rounds, self.finishing = self.finishing, {}
            claimer = max(rounds, key=lambda shard: len(rounds[shard]))
            wanted = 0 if self.stopping else sum(len(finishes) for finishes in rounds.values())
            try:
                async with anyio.create_task_group() as calls:
                    for shard, finishes in rounds.items():
                        count = wanted if shard == claimer else 0
                        calls.start_soon(self._flush, shard, finishes, count)
            finally:
                for finishes in rounds.values():
                    finishes[0].done.set()  # the batch's one event: each of its jobs goes on

    async def _flush(self, shard: int, finishes: list[_Finish], count: int) -> None:
        """Complete ``finishes`` and claim up to ``count`` tasks of ``shard``, in one call."""
        finishes = [finish for finish in finishes if not finish.job.abandoned]
        if not finishes:
            return
        finished = [(finish.job.lease, finish.value) for finish in finishes]
        try:
            outcomes, leases = await self.ops.complete_and_claim(shard, finished, count)
        except Exception as exc:  # unanswered: each completion is sent again on its own
            self.stats.error("complete_and_claim", exc)
            outcomes, leases = [_UNANSWERED] * len(finishes), []
        for finish, outcome in zip(finishes, outcomes, strict=True):
            finish.outcome = outcome
        if leases and self.handlers is not None:
            self._start(leases, self.handlers)

    async def _watch_stop(self) -> None:
        if self.stop_flag is None:
            return
        while not self.stop_flag.is_set():
            await anyio.sleep(_STOP_CHECK_S)
        self.stop()

    async def _schedule_loop(self) -> None:
        try:
            await self.ops.serve_schedules()
        except Exception as exc:  # the claims go on; the other schedulers fire the schedules
            self.stats.error("firing schedules", exc)

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.stop()
                return

    async def _sweep_loop(self) -> None:
        every = self.settings.sweep_every_s
        while not self.stopping:
            await anyio.sleep(random.uniform(0.5, 1.5) * every)
            try:
                recovered = await self.ops.recover()
                self.stats.recovered += recovered
                self._count("recovered", recovered)
            except Exception as exc:  # as for a claim: the next sweep may succeed
                self.stats.error("recover_leases", exc)

    async def _renew_loop(self) -> None:
        every = self.settings.renew_every_s(self.ops.lease_ms)
        while True:
            await anyio.sleep(every)
            jobs = [job for job in self.held.values() if not job.lost]
            if not jobs:
                continue
            try:
                reasons = await self.ops.renew([job.lease for job in jobs])
            except Exception as exc:  # as for a claim: the next renewal may succeed
                self.stats.error("renew_leases", exc)
                # a lease the store could not renew in time has run out: lost
                now = time.monotonic()
                for job in jobs:
                    until = getattr(job.lease, "_held_until", None)
                    if until is not None and until <= now and not job.ending:
                        self._lose(job, "expired")
                continue
            held_until = time.monotonic() + self.ops.lease_ms / 1000
            for job, reason in zip(jobs, reasons, strict=True):
                if job.ending or self.held.get(_key(job.lease)) is not job:
                    continue  # its last write (or its end) decides: it says if the lease is lost
                if reason:
                    self._lose(job, reason)
                else:
                    _hold(job.lease, held_until)

    def _lose(self, job: _Job, reason: str) -> None:
        """The lease is no longer ours: stop the handler, write nothing more."""
        if job.lost:
            return
        job.lost = reason
        job.outcome = "lost"
        give_up = getattr(job.lease, "_give_up", None)
        if give_up is not None:
            give_up(reason)  # a sync handler's next write raises LeaseLost at once
        self.stats.lost += 1
        self._count("lease_lost")
        logger.info(
            "lease on task %s lost (%s): abandoned",
            printable(str(job.lease.task_id)),
            printable(reason),
        )
        if job.scope is not None:
            job.scope.cancel()

    async def _run(self, job: _Job) -> None:
        try:
            if job.abandoned:
                return
            with anyio.CancelScope(shield=True) as scope:
                job.scope = scope
                await self._attempt(job)
        except Exception as exc:  # a bug must not stop the other tasks
            logger.error(
                "task %s: unexpected error in the worker\n%s",
                printable(str(job.lease.task_id)),
                _traceback(exc),
            )
            self.stats.error(f"task {job.lease.task_id}", exc)
        finally:
            self.held.pop(_key(job.lease), None)
            self._notify()
            if self.meter is not None and job.handler_s is not None:
                self.meter.handled(self.settings.queue, job.outcome, job.handler_s)

    async def _attempt(self, job: _Job) -> None:
        try:
            value = await self._call(job)
        except LeaseLost as exc:
            self._lose(job, exc.reason)
            return
        except Exception as exc:
            if not job.lost:
                await self._handler_failed(job, exc)
            return
        if job.lost:
            return
        try:
            written = await self._complete(job, value)
        except StoreUnavailable:
            raise  # never the handler's failure (and never raised by a held lease)
        except TaskStoreError as exc:  # a result the store refuses (not JSON, too large)
            await self._handler_failed(job, exc)
            return
        if not written:  # the lease was found lost as the result was written: abandoned
            return
        self.stats.completed += 1
        self._count("completed")
        job.outcome = "completed"

    async def _complete(self, job: _Job, value: Any) -> bool:
        """Complete the job with the handler's ``value``: in its shard's next batch if it can.

        Returns whether it was written, as ``_write``.
        """
        lease = job.lease
        shard = getattr(lease, "_shard", None)
        if not self.ops.batches or shard is None:
            return await self._write(
                job, self.ops.complete, lease, TaskStatus.COMPLETED, None, value
            )
        job.ending = True
        waiting = self.finishing.get(shard)
        if waiting is None:
            waiting = self.finishing[shard] = []
            done = anyio.Event()  # one for the batch: its first job's
        else:
            done = waiting[0].done
        finish = _Finish(job, value, done)
        waiting.append(finish)
        self._finished.set()
        await finish.done.wait()
        outcome = finish.outcome
        if outcome is True:
            return True
        if isinstance(outcome, LeaseLost):
            self._lose(job, outcome.reason)
            return False
        if isinstance(outcome, BaseException):
            raise outcome
        complete = functools.partial(self.ops.complete, sent_before=outcome is _UNANSWERED)
        return await self._write(job, complete, lease, TaskStatus.COMPLETED, None, value)

    async def _call(self, job: _Job) -> Any:
        """Run the handler on the job's lease, timing it."""
        started = time.perf_counter()
        try:
            return await self.ops.call(self.handler, job.lease, self.handler_is_async)
        finally:
            job.handler_s = time.perf_counter() - started

    async def _handler_failed(self, job: _Job, exc: Exception) -> None:
        lease = job.lease
        s = self.settings
        if out_of_attempts(lease.attempt, _max_attempts(lease), s.max_attempts):
            logger.info(
                "task %s failed on attempt %s: %s",
                printable(str(lease.task_id)),
                lease.attempt,
                printable(str(exc)),
            )
            message = failure_message(exc, self.ops.message_limit)
            result = failure_result(message, exc)
            try:
                written = await self._write(
                    job, self.ops.complete, lease, TaskStatus.FAILED, message, result
                )
            except InvalidArgument:  # the result is too large for the store: the message alone
                written = await self._write(
                    job, self.ops.complete, lease, TaskStatus.FAILED, message, None
                )
            if written:
                self.stats.failed += 1
                self._count("failed")
                job.outcome = "failed"
            return
        delay = min(
            retry_delay_ms(lease.attempt, s.retry_base_ms, s.retry_max_ms), self.ops.delay_limit_ms
        )
        logger.info(
            "task %s raised on attempt %s (%s); retried in %s ms",
            printable(str(lease.task_id)),
            lease.attempt,
            printable(str(exc)),
            delay,
        )
        if await self._write(job, self.ops.release, lease, delay):
            self.stats.retried += 1
            job.outcome = "retried"

    async def _write(self, job: _Job, write: Callable[..., Awaitable[None]], *args: Any) -> bool:
        """Send a holder's write: the lease sends it again while the store does not answer.

        Returns whether it was written (or found already applied, after a reply that was
        lost); False when the lease was lost first (abandoned). It never raises
        ``StoreUnavailable``: a store that stays away past the lease loses the lease.
        """
        job.ending = True
        try:
            await write(*args)
        except LeaseLost as exc:
            self._lose(job, exc.reason)
            return False
        return True

    async def _drain(self) -> None:
        """Stop: let the handlers finish within the grace period, then release the rest."""
        self.stop()
        with anyio.move_on_after(self.settings.grace_s):
            while self.held:
                await self._changed.wait()
        left = list(self.held.values())
        for job in left:
            job.abandoned = True
            job.ending = True
            if job.scope is not None:
                job.scope.cancel()
        for job in left:
            if job.lost:
                continue
            _hold(job.lease, None)  # stopping: an unreachable store is not waited for
            try:
                await self.ops.release(job.lease, 0, count_attempt=False)  # stopping spends none
                self.stats.released += 1
            except LeaseLost:
                pass  # it ended (or was taken) meanwhile: nothing left to hand back
            except Exception as exc:  # unreachable: the lease runs out and is recovered
                self.stats.error(f"release task {job.lease.task_id}", exc)


async def async_run_worker(
    store: Any,
    handler: Handler,
    settings: WorkerSettings,
    *,
    stop: StopFlag | None = None,
    handle_signals: bool = True,
) -> WorkerStats:
    """Run the worker loop on an async store until stopped; see the module's docstring."""
    limiter = anyio.CapacityLimiter(settings.concurrency + 4)
    worker = _Worker(_AsyncOps(store, settings, limiter), handler, settings, stop, handle_signals)
    return await worker.serve()


def sync_run_worker(
    store: Any,
    handler: Handler,
    settings: WorkerSettings,
    *,
    stop: StopFlag | None = None,
    handle_signals: bool = True,
) -> WorkerStats:
    """Run the worker loop on a blocking store until stopped, in an event loop of its own.

    The store's calls and sync handlers run in worker threads; Ctrl-C (KeyboardInterrupt)
    stops the loop like a cancellation: handlers get the grace period, the rest is released.
    """

    async def main() -> WorkerStats:
        limiter = anyio.CapacityLimiter(2 * settings.concurrency + 4)
        ops = _SyncOps(store, settings, limiter)
        return await _Worker(ops, handler, settings, stop, handle_signals).serve()

    result: WorkerStats = anyio.run(main)
    return result


__all__ = ["Handler", "StopFlag", "WorkerStats", "async_run_worker", "sync_run_worker"]
