"""Schedules: tasks submitted on a cron or interval schedule, each tick exactly once.

``ScheduleOperations`` is the part of the store (``GenericTaskStore``) that keeps
schedules and fires them; ``run_scheduler`` (``_scheduler.py``) and ``run_worker`` call
``_fire_due_schedules`` in a loop.
"""

from __future__ import annotations

import builtins
import logging
from time import monotonic
from typing import Protocol

import msgspec

from .._core.backend_types import CreateOutcome, NewJob
from .._core.clock import now_ms
from .._core.errors import InvalidArgument, ScheduleNameTaken, TaskStoreError
from .._core.model import JSONValue, encode_json
from .._core.schedules import (
    ScheduleInfo,
    check_spec,
    decode_spec,
    encode_spec,
    plan,
    schedule_info,
    tick_after,
)
from .._core.shown import printable
from .._core.validation import (
    check_id,
    check_owner,
    check_priority,
    check_queue,
    resolve_max_attempts,
    resolve_ttl,
)
from .._runtime.wake import async_waker
from ._protocols import ScheduleBackend
from ._queues import QueueOperations

logger = logging.getLogger("taskstore_redis.scheduler")

FIRE_BATCH = 100
"""The due schedules one round reads per shard at most."""
_LIST_LIMIT = 1_000_000
"""The schedules ``schedules`` reads per shard at most."""
LONGEST_SLEEP_S = 30.0
"""A scheduler reads the schedules at least this often, in case a change notice was lost."""
UNWATCHED_SLEEP_S = 1.0
"""... and this often while its subscription to change notices is not confirmed."""
STOP_CHECK_S = 0.25
"""How often a scheduler with a stop flag looks at it (no store call)."""
_PAUSE_FIRST_S = 0.05
_PAUSE_MAX_S = 5.0


class StopFlag(Protocol):
    """What stops a scheduler: an ``anyio.Event`` or ``threading.Event``."""

    def is_set(self) -> bool:
        """Whether to stop."""
        ...


class ScheduleOperations(QueueOperations):
    """The store's schedule operations (see ``GenericTaskStore``)."""

    def _keeps_schedules(self) -> bool:
        """Whether the backend keeps schedules."""
        return isinstance(self._backend, ScheduleBackend)

    def _schedule_backend(self) -> ScheduleBackend:
        backend = self._backend
        if not isinstance(backend, ScheduleBackend):
            raise InvalidArgument(f"{type(backend).__name__} has no schedules")
        return backend

    async def schedule(
        self,
        name: str,
        *,
        owner_id: str,
        request_method: str,
        params: JSONValue = None,
        queue: str = "default",
        cron: str | None = None,
        every_ms: int | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
        catch_up: str = "once",
    ) -> ScheduleInfo:
        """Create or update the schedule ``name``: a task submitted on every tick.

        Each tick submits one task of ``owner_id`` to ``queue``, as ``submit`` would
        (``request_method``, ``params``, ``priority``, ``max_attempts``, the default TTL),
        with ``job.scheduled_for`` the tick, however many processes run
        ``run_scheduler`` or ``run_worker``: one atomic step claims the tick, on the
        store's clock (the server's, for Redis). Exactly one of ``cron`` (five fields,
        read in ``timezone``, daylight-saving changes handled as Debian cron does) and
        ``every_ms`` (ticks at the multiples of ``every_ms`` since the epoch) is given.

        Ticks missed while no scheduler ran: the ticks due at a firing are those from
        the stored next fire time up to now. One fires. Two or more: ``catch_up="once"``
        fires one task for them, its ``scheduled_for`` the latest; ``"skip"`` fires
        none. Either way the next fire time becomes the first tick after now.

        The name is unique per key prefix. Calling again with the same name and owner
        updates the schedule: the same arguments change nothing (so a deploy may call
        it every time), others take effect from the next tick after now.

        Raises:
            InvalidArgument: a bad name, cron, interval, time zone, catch-up, queue,
                priority, attempt count, method or params; nothing is written.
            ScheduleNameTaken: another owner's schedule has the name; nothing is written.
            AnonymousAccessDenied: an anonymous owner while anonymous access is off.

        """
        owner = check_owner(owner_id, self._security)
        method = check_id(request_method, "request_method")
        queue_name = check_queue(queue)
        rank = check_priority(priority)
        attempts = (
            None if max_attempts is None else resolve_max_attempts(max_attempts, self._config)
        )
        value = msgspec.json.decode(self._params(params, "params"))
        checked, spec = check_spec(
            name,
            owner=owner,
            method=method,
            params=value,
            queue=queue_name,
            cron=cron,
            every_ms=every_ms,
            timezone=timezone,
            priority=rank,
            max_attempts=attempts,
            catch_up=catch_up,
        )
        backend = self._schedule_backend()
        first = tick_after(spec, await backend.server_time_ms())
        holder = await backend.schedule_name(checked, owner, remove=False)
        if holder != owner:
            raise ScheduleNameTaken(checked)
        stored = await backend.put_schedule(owner, checked, encode_spec(spec), first)
        return schedule_info(stored)

    async def unschedule(self, name: str) -> bool:
        """Delete the schedule ``name``; False if there was none. Tasks it submitted stay.

        Raises:
            InvalidArgument: a bad name.

        """
        if not isinstance(name, str):
            raise InvalidArgument(f"name must be a string, got {type(name).__name__}")
        backend = self._schedule_backend()
        owner = await backend.schedule_owner(name)
        if owner is None:
            return False
        removed = await backend.remove_schedule(owner, name)
        await backend.schedule_name(name, owner, remove=True)
        return removed

    async def schedules(self) -> builtins.list[ScheduleInfo]:
        """Every schedule of the store, by name."""
        found, _ = await self._schedule_backend().due_schedules(float("inf"), _LIST_LIMIT)
        return sorted((schedule_info(stored) for stored in found), key=lambda s: s.name)

    async def _fire_due_schedules(self) -> float | None:
        """Fire every schedule due now, one step each; seconds until the next is due.

        0 when another round should follow at once; None when there is no schedule.
        """
        backend = self._schedule_backend()
        now = await backend.server_time_ms()
        due, earliest = await backend.due_schedules(now, FIRE_BATCH)
        stepped = refused = 0
        for stored in due:
            spec = decode_spec(stored.spec)
            step = plan(spec, stored.next_ms, now)
            if step is None:
                continue
            task = None
            if step.tick_ms is not None:
                job = NewJob(
                    queue=spec.queue,
                    params=encode_json(spec.params),
                    max_attempts=resolve_max_attempts(spec.max_attempts, self._config),
                    delay_ms=0,
                    priority=spec.priority,
                    scheduled_for_ms=step.tick_ms,
                )
                ttl = resolve_ttl(None, self._config)
                _, task = self._new_task(spec.owner, spec.method, ttl, job, now_ms())
            outcome = await backend.fire_schedule(spec.owner, stored, step, task)
            if outcome is None:
                refused += 1
                continue
            stepped += 1
            if task is not None and outcome is not CreateOutcome.CREATED:
                logger.warning(
                    "schedule %s: the task of tick %d was not created (%s)",
                    printable(repr(stored.name)),
                    step.tick_ms,
                    getattr(outcome, "name", outcome),
                )
        if stepped:
            return 0.0
        if earliest is None:
            return None
        if refused:  # another node's clock is behind, or a change came meanwhile
            return max(0.005, (earliest - now) / 1000)
        return max(0.0, (earliest - now) / 1000)

    async def _serve_schedules(self, stop: StopFlag | None) -> None:
        """Fire schedules as they come due, until ``stop`` is set (or cancelled).

        Sleeps until the earliest next fire time, woken early by a change notice (a
        schedule created, changed or deleted); errors are logged and retried with backoff.
        """
        backend = self._schedule_backend()
        waker = async_waker()
        changed = [False]

        def notice(shard: int) -> None:
            changed[0] = True
            waker.poke()

        pause = _PAUSE_FIRST_S
        async with backend.schedule_watch(notice) as watch:
            while stop is None or not stop.is_set():
                changed[0] = False
                try:
                    wait = await self._fire_due_schedules()
                    pause = _PAUSE_FIRST_S
                except TaskStoreError as exc:
                    logger.warning("firing schedules failed, again in %.2f s: %s", pause, exc)
                    wait, pause = pause, min(pause * 2, _PAUSE_MAX_S)
                if wait == 0:
                    continue
                limit = LONGEST_SLEEP_S if wait is None else min(wait, LONGEST_SLEEP_S)
                if not watch.live():
                    limit = min(limit, UNWATCHED_SLEEP_S)
                deadline = monotonic() + limit
                while not changed[0] and (stop is None or not stop.is_set()):
                    left = deadline - monotonic()
                    if left <= 0:
                        break
                    await waker.wait(left if stop is None else min(left, STOP_CHECK_S))
