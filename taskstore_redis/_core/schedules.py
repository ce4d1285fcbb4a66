"""Schedules: their checked spec, when they fire, and what a round of firing does.

Pure rules, no I/O: both backends and the scheduler loop share them. A schedule fires
on ticks: for ``every_ms``, the multiples of ``every_ms`` since the epoch; for ``cron``,
the times its five fields name in its time zone, as ``cronsim`` (Debian cron's rules,
daylight-saving changes included) computes them. Each tick submits one task, whose
``job.scheduled_for`` is the tick.

Catch-up: the ticks due at a firing are those from the schedule's stored next fire time
up to the server's now. One: it fires. Two or more (no scheduler ran for a whole
period): ``catch_up="once"`` fires one task for them all, its ``scheduled_for`` the
latest of them; ``"skip"`` fires none. Either way the next fire time becomes the first
tick after now.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from .errors import InvalidArgument
from .model import JSONValue

CATCH_UP = ("once", "skip")
"""What a schedule does with ticks missed while no scheduler ran."""
MAX_EVERY_MS = 366 * 24 * 3600 * 1000
"""The longest ``every_ms``: a year."""
MIN_EVERY_MS = 10
"""The shortest ``every_ms``."""
MAX_NAME_LENGTH = 200
"""The longest schedule name, in characters."""


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a schedule submits and when: stored as canonical JSON (field ``s``)."""

    owner: str
    method: str
    params: JSONValue = None
    queue: str = "default"
    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    priority: int = 0
    max_attempts: int | None = None
    catch_up: str = "once"


_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(ScheduleSpec)


def encode_spec(spec: ScheduleSpec) -> bytes:
    """The canonical JSON of a spec (equal specs, equal bytes)."""
    return _encoder.encode(spec)


def decode_spec(data: bytes | str) -> ScheduleSpec:
    """A spec as ``encode_spec`` stored it."""
    return _decoder.decode(data)


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as ``GenericTaskStore.schedules`` lists it."""

    name: str
    owner_id: str
    queue: str
    request_method: str
    params: JSONValue
    cron: str | None
    """The five cron fields, or None for an interval schedule."""
    every_ms: int | None
    """The interval, or None for a cron schedule."""
    timezone: str
    """The time zone the cron fields are read in."""
    priority: int
    max_attempts: int | None
    """The attempts each task gets; None: the store's default."""
    catch_up: str
    """``"once"`` or ``"skip"``: what ticks missed while no scheduler ran become."""
    next_fire_at: datetime
    """The next tick (the server's clock)."""
    last_fire_at: datetime | None
    """The tick of the last task it submitted, or None."""
    last_task_id: str | None
    """The id of the last task it submitted, or None."""


class StoredSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as a backend holds it."""

    name: str
    spec: bytes
    """``encode_spec`` of its spec."""
    next_ms: int
    version: int
    """+1 each time the spec changes: a firing compares it with the one it read."""
    last_ms: int | None = None
    last_task_id: str | None = None


class ScheduleFire(msgspec.Struct, frozen=True, kw_only=True):
    """One firing step of a schedule, as ``plan`` decided it."""

    due_at_ms: int
    """The latest tick due: the backend refuses the step if its clock has not reached it."""
    next_ms: int
    """The next fire time after this step."""
    tick_ms: int | None
    """The tick of the task to submit (its ``scheduled_for``), or None to submit none."""


def check_spec(
    name: object,
    *,
    owner: str,
    method: str,
    params: JSONValue,
    queue: str,
    cron: object,
    every_ms: object,
    timezone: object,
    priority: int,
    max_attempts: int | None,
    catch_up: object,
) -> tuple[str, ScheduleSpec]:
    """The checked name and spec of ``schedule``; InvalidArgument for anything wrong."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"name must be a string of 1 to {MAX_NAME_LENGTH} characters, got {name!r:.80}"
        )
    if not name.isprintable():
        raise InvalidArgument(f"name must be printable, got {name!r:.80}")
    if (cron is None) == (every_ms is None):
        raise InvalidArgument("exactly one of cron and every_ms must be given")
    if catch_up not in CATCH_UP:
        raise InvalidArgument(f"catch_up must be 'once' or 'skip', got {catch_up!r:.80}")
    if not isinstance(timezone, str):
        raise InvalidArgument(f"timezone must be a string, got {type(timezone).__name__}")
    zone = _zone(timezone)
    if every_ms is not None:
        if (
            isinstance(every_ms, bool)
            or not isinstance(every_ms, int)
            or not MIN_EVERY_MS <= every_ms <= MAX_EVERY_MS
        ):
            raise InvalidArgument(
                f"every_ms must be an int from {MIN_EVERY_MS} to {MAX_EVERY_MS}, "
                f"got {every_ms!r:.80}"
            )
    else:
        if not isinstance(cron, str):
            raise InvalidArgument(f"cron must be a string, got {type(cron).__name__}")
        cron = " ".join(cron.split())
        if len(cron.split(" ")) != 5:
            raise InvalidArgument(
                f"cron must have five fields (minute hour day month weekday), got {cron!r:.80}"
            )
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            raise InvalidArgument(f"cron {cron!r:.80} is not valid: {exc}") from None
    spec = ScheduleSpec(
        owner=owner,
        method=method,
        params=params,
        queue=queue,
        cron=cron if isinstance(cron, str) else None,
        every_ms=every_ms if isinstance(every_ms, int) else None,
        timezone=timezone,
        priority=priority,
        max_attempts=max_attempts,
        catch_up=str(catch_up),
    )
    return name, spec


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"unknown time zone {name!r:.80}") from None


def tick_after(spec: ScheduleSpec, after_ms: int) -> int:
    """The first tick strictly after ``after_ms``."""
    if spec.every_ms is not None:
        return (after_ms // spec.every_ms + 1) * spec.every_ms
    assert spec.cron is not None
    start = datetime.fromtimestamp(after_ms // 1000, _zone(spec.timezone))
    return int(next(CronSim(spec.cron, start)).timestamp() * 1000)


def tick_at_or_before(spec: ScheduleSpec, at_ms: int) -> int:
    """The last tick at or before ``at_ms``."""
    if spec.every_ms is not None:
        return at_ms // spec.every_ms * spec.every_ms
    assert spec.cron is not None
    # cron ticks fall on whole seconds: the last one before the next second
    start = datetime.fromtimestamp(at_ms // 1000, _zone(spec.timezone)) + timedelta(seconds=1)
    return int(next(CronSim(spec.cron, start, reverse=True)).timestamp() * 1000)


def plan(spec: ScheduleSpec, next_ms: int, now_ms: int) -> ScheduleFire | None:
    """What firing a schedule whose stored next fire time is ``next_ms`` does at ``now_ms``.

    None while it is not due. See the module's docstring for the catch-up rule.
    """
    if next_ms > now_ms:
        return None
    following = tick_after(spec, next_ms)
    if following > now_ms:  # one tick due
        return ScheduleFire(due_at_ms=next_ms, next_ms=following, tick_ms=next_ms)
    latest = max(tick_at_or_before(spec, now_ms), following)
    return ScheduleFire(
        due_at_ms=latest,
        next_ms=tick_after(spec, now_ms),
        tick_ms=latest if spec.catch_up == "once" else None,
    )


def schedule_info(stored: StoredSchedule) -> ScheduleInfo:
    """The public view of a stored schedule."""
    spec = decode_spec(stored.spec)
    return ScheduleInfo(
        name=stored.name,
        owner_id=spec.owner,
        queue=spec.queue,
        request_method=spec.method,
        params=spec.params,
        cron=spec.cron,
        every_ms=spec.every_ms,
        timezone=spec.timezone,
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        catch_up=spec.catch_up,
        next_fire_at=datetime.fromtimestamp(stored.next_ms / 1000, UTC),
        last_fire_at=(
            None if stored.last_ms is None else datetime.fromtimestamp(stored.last_ms / 1000, UTC)
        ),
        last_task_id=stored.last_task_id,
    )
