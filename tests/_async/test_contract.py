"""The contract of a task store: the eleven operations, one test per rule.

Every test runs on every backend of the ``async_make_store`` fixture and only
uses the public store API, so that the same rules bind every backend. This file
is written for the async store; scripts/unasync.py derives the blocking twin.
Races between stores are in tests/_async/test_concurrency.py.

Run this file alone with ``pytest tests/_async/test_contract.py``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

import taskstore_redis.asyncio as ts
from taskstore_redis.asyncio import (
    AnonymousAccessDenied,
    ConcurrentModification,
    InvalidArgument,
    InvalidTransition,
    NoResult,
    NotReady,
    ResourceExhausted,
    SecurityConfig,
    StorageCorrupted,
    StoreConfig,
    StoreUnavailable,
    TaskExpired,
    TaskNotFound,
    TaskStatus,
    TaskStoreError,
    VariableSizeExceeded,
    WaitTimeout,
)

StoreFactory = Callable[..., ts.GenericTaskStore]

OWNER = "alice"
OTHER_OWNER = "bob"
METHOD = "tools/call"

SHORT_TTL_MS = 50
"""A TTL that has surely run out after ``AFTER_SHORT_TTL`` seconds of sleep."""
AFTER_SHORT_TTL = 0.1

WORKING = TaskStatus.WORKING
INPUT_REQUIRED = TaskStatus.INPUT_REQUIRED
COMPLETED = TaskStatus.COMPLETED
FAILED = TaskStatus.FAILED
CANCELLED = TaskStatus.CANCELLED
OPEN_STATUSES = [WORKING, INPUT_REQUIRED]
TERMINAL = [COMPLETED, FAILED, CANCELLED]

ALLOWED_MOVES = [
    pytest.param(src, dst, id=f"{src}->{dst}")
    for src in TaskStatus
    for dst in TaskStatus
    if dst in ts.TRANSITIONS[src]
]
FORBIDDEN_MOVES = [
    pytest.param(src, dst, id=f"{src}->{dst}")
    for src in TaskStatus
    for dst in TaskStatus
    if dst not in ts.TRANSITIONS[src]
]

MUTATIONS = ["update_status", "set_variables", "set_result", "complete_with_result", "cancel"]

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def nested_lists(depth: int) -> list[Any]:
    """Return ``[[[...]]]`` with ``depth`` lists, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_JSON_VALUES = [
    pytest.param(nested_lists(50), id="nested-too-deep"),
    pytest.param("x" * (StoreConfig().max_string_length + 1), id="string-too-long"),
    pytest.param({"k" * (StoreConfig().max_string_length + 1): 1}, id="key-too-long"),
    pytest.param({1: "x"}, id="non-str-key"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="infinity"),
    pytest.param(float("-inf"), id="minus-infinity"),
    pytest.param([1, float("nan")], id="nan-in-a-list"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param({1, 2}, id="set"),
    pytest.param(2**64, id="int-above-64-bits"),
    pytest.param(-(2**63) - 1, id="int-below-64-bits"),
    pytest.param(object(), id="object"),
]


def parse_timestamp(stamp: str) -> datetime:
    """Parse an MCP wire timestamp into an aware datetime."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z")


def seconds_until(moment: datetime | None, extra_ms: int = 0) -> float:
    """Seconds from now until ``extra_ms`` after ``moment`` (0 if that is past).

    Sleeping this long, rather than a fixed time, keeps a test right when the
    backend is slow to answer (a first call to a cluster, a loaded machine).
    """
    assert moment is not None
    remaining = moment + timedelta(milliseconds=extra_ms) - datetime.now(UTC)
    return max(0.0, remaining.total_seconds())


def wire_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what the size limits count)."""
    return len(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


async def reach(store: ts.GenericTaskStore, task_id: str, status: TaskStatus) -> None:
    """Move a fresh ``working`` task to ``status`` by one allowed move (or none)."""
    if status is not WORKING:
        await store.update_status(task_id, status, owner_id=OWNER)


async def expired_task(store: ts.GenericTaskStore, owner_id: str = OWNER) -> ts.TaskRecord:
    """Create a task with a short TTL and wait until it has run out."""
    record = await store.create(METHOD, owner_id=owner_id, ttl_ms=SHORT_TTL_MS)
    await anyio.sleep(AFTER_SHORT_TTL)
    return record


async def mutate(store: ts.GenericTaskStore, operation: str, task_id: str, owner_id: str) -> None:
    """Apply the named mutation with arguments that are valid for a working task."""
    if operation == "update_status":
        await store.update_status(task_id, INPUT_REQUIRED, "need input", owner_id=owner_id)
    elif operation == "set_variables":
        await store.set_variables(task_id, {"k": "v"}, owner_id=owner_id)
    elif operation == "set_result":
        await store.set_result(task_id, {"answer": 42}, owner_id=owner_id)
    elif operation == "complete_with_result":
        await store.complete_with_result(
            task_id, COMPLETED, "done", {"answer": 42}, owner_id=owner_id
        )
    elif operation == "cancel":
        await store.cancel(task_id, owner_id=owner_id)
    else:  # pragma: no cover - a typo in a parametrization
        raise AssertionError(operation)


async def pages(
    store: ts.GenericTaskStore,
    owner_id: str = OWNER,
    limit: int | None = None,
    cursor: str | None = None,
) -> AsyncGenerator[ts.TaskPage, None]:
    """Yield the pages of a listing from ``cursor`` on, following next_cursor to the end."""
    while True:
        page = await store.list(owner_id=owner_id, cursor=cursor, limit=limit)
        yield page
        cursor = page.next_cursor
        if cursor is None:
            return


async def task_ids(store: ts.GenericTaskStore, owner_id: str = OWNER) -> AsyncIterator[str]:
    """Yield the id of every task of ``owner_id``, page after page."""
    async for page in pages(store, owner_id):
        for record in page.tasks:
            yield record.task.task_id


async def all_task_ids(store: ts.GenericTaskStore, owner_id: str = OWNER) -> list[str]:
    """List every task of ``owner_id`` by following the cursors."""
    return [task_id async for task_id in task_ids(store, owner_id)]


# --- create -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_create_returns_a_working_task_of_the_owner(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    assert record.task.status is WORKING
    assert record.task.status_message is None
    assert record.owner_id == OWNER
    assert record.request_method == METHOD
    assert record.variables == {}
    assert record.result is None
    assert record.version == 1


@pytest.mark.anyio
async def test_create_gives_each_task_a_distinct_uuid4_id(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    ids = [(await store.create(METHOD, owner_id=OWNER)).task.task_id for _ in range(5)]
    assert len(set(ids)) == 5
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert parsed.version == 4
        assert str(parsed) == task_id


@pytest.mark.anyio
async def test_create_applies_the_default_ttl_when_none_is_given(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(default_ttl_ms=120_000))
    record = await store.create(METHOD, owner_id=OWNER)
    assert record.task.ttl == 120_000


@pytest.mark.anyio
async def test_create_keeps_an_explicit_ttl(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=5_000)
    assert record.task.ttl == 5_000
    assert (await store.get(record.task.task_id, owner_id=OWNER)).task.ttl == 5_000


@pytest.mark.anyio
async def test_a_task_expires_ttl_milliseconds_after_its_creation(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=5_000)
    created = parse_timestamp(record.task.created_at)
    assert record.expires_at == created + timedelta(milliseconds=5_000)
    assert not record.is_expired()


@pytest.mark.anyio
async def test_create_without_a_default_ttl_makes_a_task_that_never_expires(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(default_ttl_ms=None))
    record = await store.create(METHOD, owner_id=OWNER)
    assert record.task.ttl is None
    assert record.expires_at is None
    assert not record.is_expired(datetime(9999, 1, 1, tzinfo=UTC))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "ttl_ms",
    [pytest.param(-1, id="negative"), pytest.param(10_001, id="above-maximum")],
)
async def test_create_rejects_a_negative_or_too_large_ttl_and_creates_nothing(
    async_make_store: StoreFactory, ttl_ms: int
) -> None:
    store = async_make_store(config=StoreConfig(default_ttl_ms=1_000, max_ttl_ms=10_000))
    with pytest.raises(InvalidArgument):
        await store.create(METHOD, owner_id=OWNER, ttl_ms=ttl_ms)
    assert (await store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
async def test_create_accepts_a_ttl_equal_to_the_maximum(async_make_store: StoreFactory) -> None:
    store = async_make_store(config=StoreConfig(default_ttl_ms=1_000, max_ttl_ms=10_000))
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=10_000)
    assert record.task.ttl == 10_000


@pytest.mark.anyio
@pytest.mark.parametrize("ttl_ms", [1.5, "1000", True], ids=["float", "str", "bool"])
async def test_create_rejects_a_ttl_that_is_not_an_int(
    async_make_store: StoreFactory, ttl_ms: Any
) -> None:
    store = async_make_store()
    with pytest.raises(InvalidArgument):
        await store.create(METHOD, owner_id=OWNER, ttl_ms=ttl_ms)
    assert (await store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
async def test_create_suggests_the_configured_poll_interval(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(poll_interval_ms=1234))
    record = await store.create(METHOD, owner_id=OWNER)
    assert record.task.poll_interval == 1234


@pytest.mark.anyio
async def test_create_beyond_the_owner_quota_is_resource_exhausted_and_creates_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=2))
    await store.create(METHOD, owner_id=OWNER)
    await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(ResourceExhausted) as raised:
        await store.create(METHOD, owner_id=OWNER)
    assert raised.value.code == -32603
    assert len((await store.list(owner_id=OWNER)).tasks) == 2


@pytest.mark.anyio
async def test_the_quota_counts_each_owner_separately(async_make_store: StoreFactory) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=1))
    await store.create(METHOD, owner_id=OWNER)
    record = await store.create(METHOD, owner_id=OTHER_OWNER)
    assert record.owner_id == OTHER_OWNER


@pytest.mark.anyio
async def test_expired_tasks_do_not_count_against_the_quota(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=2))
    await store.create(METHOD, owner_id=OWNER)
    await expired_task(store)
    await store.create(METHOD, owner_id=OWNER)  # the expired task left room for this one
    with pytest.raises(ResourceExhausted):
        await store.create(METHOD, owner_id=OWNER)


@pytest.mark.anyio
async def test_terminal_tasks_do_not_count_against_the_quota(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=2))
    first = await store.create(METHOD, owner_id=OWNER)
    second = await store.create(METHOD, owner_id=OWNER)
    await store.complete_with_result(first.task.task_id, COMPLETED, None, {"ok": 1}, owner_id=OWNER)
    await store.create(METHOD, owner_id=OWNER)  # the completed task left room for this one
    with pytest.raises(ResourceExhausted):
        await store.create(METHOD, owner_id=OWNER)
    await store.cancel(second.task.task_id, owner_id=OWNER)
    await store.create(METHOD, owner_id=OWNER)  # and so does a cancelled one
    assert len(await all_task_ids(store)) == 4


@pytest.mark.anyio
async def test_tasks_in_progress_counts_what_the_quota_counts(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    assert await store.tasks_in_progress(owner_id=OWNER) == 0
    first = await store.create(METHOD, owner_id=OWNER)
    second = await store.create(METHOD, owner_id=OWNER)
    await store.create(METHOD, owner_id=OTHER_OWNER)
    await expired_task(store)
    assert await store.tasks_in_progress(owner_id=OWNER) == 2
    await store.complete_with_result(first.task.task_id, COMPLETED, None, {"ok": 1}, owner_id=OWNER)
    await store.cancel(second.task.task_id, owner_id=OWNER)
    assert await store.tasks_in_progress(owner_id=OWNER) == 0
    assert await store.tasks_in_progress(owner_id=OTHER_OWNER) == 1


@pytest.mark.anyio
async def test_tasks_waiting_for_input_count_against_the_quota(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=1))
    record = await store.create(METHOD, owner_id=OWNER)
    await store.update_status(record.task.task_id, INPUT_REQUIRED, "which one?", owner_id=OWNER)
    with pytest.raises(ResourceExhausted):
        await store.create(METHOD, owner_id=OWNER)


@pytest.mark.anyio
async def test_a_quota_of_none_means_no_limit(async_make_store: StoreFactory) -> None:
    store = async_make_store(security=SecurityConfig(max_tasks_per_owner=None))
    count = SecurityConfig().max_tasks_per_owner or 0
    for _ in range(count + 1):
        await store.create(METHOD, owner_id=OWNER)
    assert len(await all_task_ids(store)) == count + 1


@pytest.mark.anyio
@pytest.mark.parametrize("owner_id", ["", "local"])
async def test_anonymous_owners_are_denied_unless_allowed(
    async_make_store: StoreFactory, owner_id: str
) -> None:
    store = async_make_store()
    with pytest.raises(AnonymousAccessDenied) as raised:
        await store.create(METHOD, owner_id=owner_id)
    assert raised.value.code == -32602
    with pytest.raises(AnonymousAccessDenied):
        await store.list(owner_id=owner_id)


@pytest.mark.anyio
@pytest.mark.parametrize("owner_id", ["", "local"])
async def test_anonymous_owners_may_use_the_store_when_allowed(
    async_make_store: StoreFactory, owner_id: str
) -> None:
    store = async_make_store(security=SecurityConfig(allow_anonymous=True))
    record = await store.create(METHOD, owner_id=owner_id)
    assert record.owner_id == owner_id
    assert await store.get(record.task.task_id, owner_id=owner_id) == record


# --- wire format ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_wire_task_has_the_mcp_camel_case_keys(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=60_000)
    wire = record.to_wire_task()
    assert wire == {
        "taskId": record.task.task_id,
        "status": "working",
        "createdAt": record.task.created_at,
        "lastUpdatedAt": record.task.last_updated_at,
        "ttl": 60_000,
        "pollInterval": StoreConfig().poll_interval_ms,
    }
    assert json.loads(json.dumps(wire)) == wire


@pytest.mark.anyio
async def test_the_wire_task_has_a_status_message_only_when_there_is_one(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    assert "statusMessage" not in record.to_wire_task()
    waiting = await store.update_status(
        record.task.task_id, INPUT_REQUIRED, "your turn", owner_id=OWNER
    )
    assert waiting.to_wire_task()["statusMessage"] == "your turn"


@pytest.mark.anyio
async def test_the_wire_task_always_has_a_ttl_key_even_when_null(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(default_ttl_ms=None))
    record = await store.create(METHOD, owner_id=OWNER)
    wire = record.to_wire_task()
    assert "ttl" in wire
    assert wire["ttl"] is None


@pytest.mark.anyio
async def test_wire_timestamps_are_utc_with_milliseconds_and_z(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    record = await store.create(METHOD, owner_id=OWNER)
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    wire = record.to_wire_task()
    for key in ("createdAt", "lastUpdatedAt"):
        assert TIMESTAMP.match(wire[key]), wire[key]
        assert before <= parse_timestamp(wire[key]) <= after


@pytest.mark.anyio
async def test_the_wire_task_with_variables_carries_them_in_meta(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    updated = await store.set_variables(record.task.task_id, {"step": 3}, owner_id=OWNER)
    wire = updated.to_wire_task_with_variables()
    assert wire["_meta"] == {"step": 3}
    assert wire["taskId"] == record.task.task_id


# --- get ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_get_returns_the_task_as_created(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_get_of_a_missing_task_is_task_not_found(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    missing = str(uuid.uuid4())
    with pytest.raises(TaskNotFound) as raised:
        await store.get(missing, owner_id=OWNER)
    assert raised.value.code == -32602
    assert raised.value.task_id == missing


@pytest.mark.anyio
async def test_a_task_of_another_owner_looks_exactly_like_a_missing_one(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=SHORT_TTL_MS)
    task_id = record.task.task_id
    with pytest.raises(TaskStoreError) as foreign:
        await store.get(task_id, owner_id=OTHER_OWNER)
    await anyio.sleep(AFTER_SHORT_TTL)
    await store.cleanup_expired()
    with pytest.raises(TaskStoreError) as missing:  # the very same id, now really gone
        await store.get(task_id, owner_id=OWNER)
    assert type(foreign.value) is type(missing.value) is TaskNotFound
    assert str(foreign.value) == str(missing.value)


@pytest.mark.anyio
@pytest.mark.parametrize("operation", [*MUTATIONS, "get_result"])
async def test_no_operation_reaches_a_task_of_another_owner(
    async_make_store: StoreFactory, operation: str
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    task_id = record.task.task_id
    with pytest.raises(TaskNotFound):
        if operation == "get_result":
            await store.get_result(task_id, owner_id=OTHER_OWNER)
        else:
            await mutate(store, operation, task_id, OTHER_OWNER)
    assert await store.get(task_id, owner_id=OWNER) == record


# --- stores sharing one storage ---------------------------------------------------------


@pytest.mark.anyio
async def test_stores_on_the_same_storage_see_each_others_changes(
    async_make_store: StoreFactory,
) -> None:
    writer, reader = async_make_store(), async_make_store()
    record = await writer.create(METHOD, owner_id=OWNER)
    updated = await writer.set_variables(record.task.task_id, {"seen": True}, owner_id=OWNER)
    assert await reader.get(record.task.task_id, owner_id=OWNER) == updated


@pytest.mark.anyio
async def test_a_store_without_retries_can_change_a_task_after_another_store_changed_it(
    async_make_store: StoreFactory,
) -> None:
    # nothing runs concurrently here, so there is no conflict to give up on
    config = StoreConfig(cas_retries=0)
    first, second = async_make_store(config=config), async_make_store(config=config)
    task_id = (await first.create(METHOD, owner_id=OWNER)).task.task_id
    await second.set_variables(task_id, {"by": "second"}, owner_id=OWNER)
    updated = await first.set_variables(task_id, {"also": "first"}, owner_id=OWNER)
    assert updated.variables == {"by": "second", "also": "first"}
    assert updated.version == 3


# --- update_status and the state machine -------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("src", "dst"), ALLOWED_MOVES)
async def test_an_allowed_transition_moves_the_task(
    async_make_store: StoreFactory, src: TaskStatus, dst: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, src)
    moved = await store.update_status(task_id, dst, f"now {dst}", owner_id=OWNER)
    assert moved.task.status is dst
    assert moved.task.status_message == f"now {dst}"
    assert await store.get(task_id, owner_id=OWNER) == moved


@pytest.mark.anyio
@pytest.mark.parametrize(("src", "dst"), FORBIDDEN_MOVES)
async def test_a_forbidden_transition_is_invalid_and_changes_nothing(
    async_make_store: StoreFactory, src: TaskStatus, dst: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, src)
    before = await store.get(task_id, owner_id=OWNER)
    with pytest.raises(InvalidTransition) as raised:
        await store.update_status(task_id, dst, owner_id=OWNER)
    assert (raised.value.from_status, raised.value.to_status) == (src.value, dst.value)
    assert await store.get(task_id, owner_id=OWNER) == before


@pytest.mark.anyio
@pytest.mark.parametrize("status", list(TaskStatus))
async def test_no_status_may_move_to_itself(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, status)
    with pytest.raises(InvalidTransition):
        await store.update_status(task_id, status, owner_id=OWNER)


@pytest.mark.anyio
async def test_invalid_transition_names_the_task_and_both_statuses(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.update_status(task_id, COMPLETED, owner_id=OWNER)
    with pytest.raises(InvalidTransition) as raised:
        await store.update_status(task_id, WORKING, owner_id=OWNER)
    error = raised.value
    assert (error.task_id, error.from_status, error.to_status) == (task_id, "completed", "working")
    assert error.code == -32602


@pytest.mark.anyio
async def test_update_status_accepts_the_wire_string_of_a_status(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    moved = await store.update_status(task_id, "input_required", owner_id=OWNER)
    assert moved.task.status is INPUT_REQUIRED


@pytest.mark.anyio
async def test_update_status_rejects_an_unknown_status_and_changes_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.update_status(record.task.task_id, "paused", owner_id=OWNER)
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_update_status_without_a_message_clears_the_previous_one(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.update_status(task_id, INPUT_REQUIRED, "which file?", owner_id=OWNER)
    moved = await store.update_status(task_id, WORKING, owner_id=OWNER)
    assert moved.task.status_message is None


@pytest.mark.anyio
async def test_a_mutation_touches_last_updated_at_but_never_created_at(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    await anyio.sleep(0.005)
    moved = await store.update_status(record.task.task_id, INPUT_REQUIRED, owner_id=OWNER)
    assert moved.task.created_at == record.task.created_at
    assert parse_timestamp(moved.task.last_updated_at) > parse_timestamp(
        record.task.last_updated_at
    )


# --- set_variables ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_set_variables_merges_into_the_existing_ones(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_variables(task_id, {"a": 1, "b": {"x": [1, 2]}}, owner_id=OWNER)
    merged = await store.set_variables(
        task_id, {"b": "replaced", "c": None, "d": True}, owner_id=OWNER
    )
    assert merged.variables == {"a": 1, "b": "replaced", "d": True}
    assert (await store.get(task_id, owner_id=OWNER)).variables == merged.variables


@pytest.mark.anyio
async def test_a_none_value_deletes_that_variable(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_variables(task_id, {"keep": 1, "drop": 2}, owner_id=OWNER)
    updated = await store.set_variables(task_id, {"drop": None, "absent": None}, owner_id=OWNER)
    assert updated.variables == {"keep": 1}


@pytest.mark.anyio
async def test_variables_may_hold_any_plain_json_within_the_limits(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    value = {
        "nested": {"list": [1, 2.5, "three", None, False, {"deep": []}]},
        "longest": "y" * StoreConfig().max_string_length,
        "int64": [-(2**63), 2**63 - 1],
        "unicode": "h\u00e9llo \u2603",
    }
    updated = await store.set_variables(task_id, value, owner_id=OWNER)
    assert updated.variables == value
    assert (await store.get(task_id, owner_id=OWNER)).variables == value


@pytest.mark.anyio
@pytest.mark.parametrize("value", BAD_JSON_VALUES)
async def test_an_invalid_variable_value_is_rejected_and_nothing_is_written(
    async_make_store: StoreFactory, value: Any
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    before = await store.set_variables(task_id, {"existing": 1}, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.set_variables(task_id, {"ok": 1, "bad": value}, owner_id=OWNER)
    assert await store.get(task_id, owner_id=OWNER) == before


@pytest.mark.anyio
@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({1: "x"}, id="int-key"),
        pytest.param({("a",): "x"}, id="tuple-key"),
        pytest.param({"k" * (StoreConfig().max_string_length + 1): 1}, id="key-too-long"),
        pytest.param([("a", 1)], id="not-a-mapping"),
    ],
)
async def test_variables_must_be_a_mapping_with_str_keys(
    async_make_store: StoreFactory, variables: Any
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.set_variables(record.task.task_id, variables, owner_id=OWNER)
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_a_depth_bomb_is_rejected_as_invalid_argument(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.set_variables(
            record.task.task_id, {"bomb": nested_lists(200_000)}, owner_id=OWNER
        )
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_variables_above_the_size_limit_raise_variable_size_exceeded_with_both_sizes(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(max_variable_size_bytes=64))
    record = await store.create(METHOD, owner_id=OWNER)
    variables = {"a": "x" * 100}
    with pytest.raises(VariableSizeExceeded) as raised:
        await store.set_variables(record.task.task_id, variables, owner_id=OWNER)
    assert raised.value.limit_bytes == 64
    assert raised.value.actual_bytes == wire_size(variables)
    assert raised.value.code == -32602
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_the_size_limit_applies_to_the_merged_variables(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(max_variable_size_bytes=64))
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    before = await store.set_variables(task_id, {"a": "x" * 30}, owner_id=OWNER)
    with pytest.raises(VariableSizeExceeded) as raised:
        await store.set_variables(task_id, {"b": "y" * 30}, owner_id=OWNER)
    assert raised.value.actual_bytes == wire_size({"a": "x" * 30, "b": "y" * 30})
    assert await store.get(task_id, owner_id=OWNER) == before


@pytest.mark.anyio
async def test_deleted_variables_do_not_count_towards_the_size_limit(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(max_variable_size_bytes=64))
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_variables(task_id, {"a": "x" * 30}, owner_id=OWNER)
    updated = await store.set_variables(task_id, {"a": None, "b": "y" * 30}, owner_id=OWNER)
    assert updated.variables == {"b": "y" * 30}


# --- set_result and get_result ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", OPEN_STATUSES)
async def test_get_result_of_a_task_that_is_not_terminal_is_not_ready(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, status)
    await store.set_result(task_id, {"partial": True}, owner_id=OWNER)
    with pytest.raises(NotReady) as raised:
        await store.get_result(task_id, owner_id=OWNER)
    assert raised.value.status == status.value
    assert raised.value.code == -32602


@pytest.mark.anyio
@pytest.mark.parametrize("status", TERMINAL)
async def test_get_result_of_a_terminal_task_without_a_result_is_no_result(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, status)
    with pytest.raises(NoResult) as raised:
        await store.get_result(task_id, owner_id=OWNER)
    assert not isinstance(raised.value, NotReady)
    assert raised.value.status == status.value
    assert raised.value.code == -32602


@pytest.mark.anyio
async def test_a_result_set_before_completion_is_returned_once_the_task_is_terminal(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await store.set_result(task_id, {"rows": [1, 2, 3]}, owner_id=OWNER)
    await store.update_status(task_id, COMPLETED, owner_id=OWNER)
    assert await store.get_result(task_id, owner_id=OWNER) == {"rows": [1, 2, 3]}


@pytest.mark.anyio
async def test_set_result_goes_up_one_version_and_keeps_the_status(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    await store.set_result(record.task.task_id, "draft", owner_id=OWNER)
    stored = await store.get(record.task.task_id, owner_id=OWNER)
    assert stored.result == "draft"
    assert stored.task.status is WORKING
    assert stored.version == record.version + 1


@pytest.mark.anyio
async def test_the_result_of_a_terminal_task_is_final(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    done = await store.complete_with_result(task_id, COMPLETED, None, "first", owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.set_result(task_id, "second", owner_id=OWNER)
    assert await store.get_result(task_id, owner_id=OWNER) == "first"
    assert await store.get(task_id, owner_id=OWNER) == done


@pytest.mark.anyio
@pytest.mark.parametrize("value", [*BAD_JSON_VALUES, pytest.param(None, id="none")])
async def test_an_invalid_result_is_rejected_and_nothing_is_written(
    async_make_store: StoreFactory, value: Any
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.set_result(record.task.task_id, value, owner_id=OWNER)
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_a_result_above_the_size_limit_raises_variable_size_exceeded(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(max_result_size_bytes=64))
    record = await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(VariableSizeExceeded) as raised:
        await store.set_result(record.task.task_id, "x" * 100, owner_id=OWNER)
    assert raised.value.limit_bytes == 64
    assert raised.value.actual_bytes == wire_size("x" * 100)
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


# --- complete_with_result --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", TERMINAL)
async def test_complete_with_result_sets_status_and_result_in_one_change(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    task_id = record.task.task_id
    done = await store.complete_with_result(task_id, status, "finished", {"ok": 1}, owner_id=OWNER)
    assert done.task.status is status
    assert done.task.status_message == "finished"
    assert done.result == {"ok": 1}
    assert done.version == record.version + 1
    assert await store.get(task_id, owner_id=OWNER) == done
    assert await store.get_result(task_id, owner_id=OWNER) == {"ok": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("status", OPEN_STATUSES)
async def test_complete_with_result_needs_a_terminal_status(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.complete_with_result(record.task.task_id, status, None, "r", owner_id=OWNER)
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
@pytest.mark.parametrize("status", TERMINAL)
async def test_complete_with_result_of_a_terminal_task_is_invalid_and_keeps_the_result(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    done = await store.complete_with_result(task_id, status, None, "first", owner_id=OWNER)
    with pytest.raises(InvalidTransition):
        await store.complete_with_result(task_id, COMPLETED, "again", "second", owner_id=OWNER)
    assert await store.get(task_id, owner_id=OWNER) == done


@pytest.mark.anyio
async def test_complete_with_an_invalid_result_changes_neither_status_nor_result(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(max_result_size_bytes=64))
    record = await store.create(METHOD, owner_id=OWNER)
    task_id = record.task.task_id
    with pytest.raises(VariableSizeExceeded):
        await store.complete_with_result(task_id, COMPLETED, None, "x" * 100, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.complete_with_result(task_id, COMPLETED, None, float("nan"), owner_id=OWNER)
    assert await store.get(task_id, owner_id=OWNER) == record


# --- list --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_list_returns_the_owners_tasks_newest_first(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    ids: list[str] = []
    for _ in range(4):
        ids.append((await store.create(METHOD, owner_id=OWNER)).task.task_id)
        await anyio.sleep(0.003)
    page = await store.list(owner_id=OWNER)
    assert [record.task.task_id for record in page.tasks] == ids[::-1]
    assert page.next_cursor is None


@pytest.mark.anyio
async def test_list_returns_records_equal_to_get(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    updated = await store.set_variables(record.task.task_id, {"k": [1]}, owner_id=OWNER)
    assert (await store.list(owner_id=OWNER)).tasks == [updated]


@pytest.mark.anyio
async def test_list_returns_at_most_limit_tasks(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    for _ in range(5):
        await store.create(METHOD, owner_id=OWNER)
    page = await store.list(owner_id=OWNER, limit=2)
    assert len(page.tasks) == 2
    assert page.next_cursor is not None


@pytest.mark.anyio
async def test_list_without_a_limit_uses_the_default_limit(async_make_store: StoreFactory) -> None:
    store = async_make_store(config=StoreConfig(list_default_limit=3))
    for _ in range(5):
        await store.create(METHOD, owner_id=OWNER)
    assert len((await store.list(owner_id=OWNER)).tasks) == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    "limit",
    [0, -1, StoreConfig().list_max_limit + 1, 2.0, "10", True],
    ids=["zero", "negative", "above-maximum", "float", "str", "bool"],
)
async def test_list_rejects_a_limit_that_is_not_an_int_in_range(
    async_make_store: StoreFactory, limit: Any
) -> None:
    store = async_make_store()
    await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.list(owner_id=OWNER, limit=limit)


@pytest.mark.anyio
async def test_list_of_an_owner_without_tasks_is_one_empty_page(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    page = await store.list(owner_id=OWNER)
    assert page.tasks == []
    assert page.next_cursor is None


@pytest.mark.anyio
async def test_the_page_with_the_last_task_has_no_next_cursor(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    for _ in range(3):
        await store.create(METHOD, owner_id=OWNER)
    page = await store.list(owner_id=OWNER, limit=3)
    assert len(page.tasks) == 3
    assert page.next_cursor is None


@pytest.mark.anyio
async def test_paging_visits_every_task_exactly_once(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    created = {(await store.create(METHOD, owner_id=OWNER)).task.task_id for _ in range(7)}
    seen: list[str] = []
    sizes: list[int] = []
    async for page in pages(store, limit=3):
        sizes.append(len(page.tasks))
        seen.extend(record.task.task_id for record in page.tasks)
    assert sorted(seen) == sorted(created)
    assert sizes == [3, 3, 1]


@pytest.mark.anyio
async def test_paging_visits_every_lasting_task_exactly_once_while_others_come_and_go(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    lasting: set[str] = set()
    for number in range(12):
        # every third task expires soon and is deleted during the listing,
        # among them the last task of the first page, where the cursor points
        short_lived = number % 3 == 0
        record = await store.create(
            METHOD, owner_id=OWNER, ttl_ms=SHORT_TTL_MS if short_lived else None
        )
        if not short_lived:
            lasting.add(record.task.task_id)
        await anyio.sleep(0.002)
    first = await store.list(owner_id=OWNER, limit=3)
    seen = [record.task.task_id for record in first.tasks]
    await anyio.sleep(AFTER_SHORT_TTL)
    assert await store.cleanup_expired() == 4
    for _ in range(3):
        await store.create(METHOD, owner_id=OWNER)
    assert first.next_cursor is not None
    async for page in pages(store, limit=3, cursor=first.next_cursor):
        seen.extend(record.task.task_id for record in page.tasks)
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert lasting <= set(seen)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "not-a-cursor", "eyJub3QiOiAiYSBjdXJzb3IifQ", "W10", "x" * 5000],
    ids=["empty", "not-base64", "words", "json-object", "empty-array", "huge"],
)
async def test_a_malformed_cursor_is_invalid_argument(
    async_make_store: StoreFactory, cursor: str
) -> None:
    store = async_make_store()
    await store.create(METHOD, owner_id=OWNER)
    with pytest.raises(InvalidArgument):
        await store.list(owner_id=OWNER, cursor=cursor)


@pytest.mark.anyio
async def test_a_truncated_cursor_is_invalid_argument(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    for _ in range(3):
        await store.create(METHOD, owner_id=OWNER)
    cursor = (await store.list(owner_id=OWNER, limit=1)).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidArgument):
        await store.list(owner_id=OWNER, cursor=cursor[: len(cursor) // 2])


@pytest.mark.anyio
async def test_the_cursor_of_another_owner_is_invalid_argument(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    for owner_id in (OWNER, OTHER_OWNER):
        for _ in range(3):
            await store.create(METHOD, owner_id=owner_id)
    cursor = (await store.list(owner_id=OWNER, limit=1)).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidArgument):
        await store.list(owner_id=OTHER_OWNER, cursor=cursor)


@pytest.mark.anyio
async def test_owners_never_see_each_others_tasks(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    mine = {(await store.create(METHOD, owner_id=OWNER)).task.task_id for _ in range(3)}
    theirs = {(await store.create(METHOD, owner_id=OTHER_OWNER)).task.task_id for _ in range(2)}
    assert set(await all_task_ids(store, OWNER)) == mine
    assert set(await all_task_ids(store, OTHER_OWNER)) == theirs


# --- cancel ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", OPEN_STATUSES)
async def test_cancel_moves_an_open_task_to_cancelled(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, status)
    cancelled = await store.cancel(task_id, owner_id=OWNER)
    assert cancelled.task.status is CANCELLED
    assert await store.get(task_id, owner_id=OWNER) == cancelled


@pytest.mark.anyio
@pytest.mark.parametrize("status", TERMINAL)
async def test_cancel_of_a_terminal_task_is_an_invalid_transition(
    async_make_store: StoreFactory, status: TaskStatus
) -> None:
    store = async_make_store()
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    await reach(store, task_id, status)
    before = await store.get(task_id, owner_id=OWNER)
    with pytest.raises(InvalidTransition) as raised:
        await store.cancel(task_id, owner_id=OWNER)
    assert (raised.value.from_status, raised.value.to_status) == (status.value, "cancelled")
    assert await store.get(task_id, owner_id=OWNER) == before


# --- versions ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_version_goes_up_by_one_per_mutation(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    task_id = record.task.task_id
    assert record.version == 1
    assert (await store.update_status(task_id, INPUT_REQUIRED, owner_id=OWNER)).version == 2
    assert (await store.set_variables(task_id, {"a": 1}, owner_id=OWNER)).version == 3
    await store.set_result(task_id, "partial", owner_id=OWNER)
    assert (await store.get(task_id, owner_id=OWNER)).version == 4
    assert (await store.update_status(task_id, WORKING, owner_id=OWNER)).version == 5
    assert (await store.cancel(task_id, owner_id=OWNER)).version == 6
    assert (await store.get(task_id, owner_id=OWNER)).version == 6


@pytest.mark.anyio
async def test_reads_do_not_change_the_version(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    await store.get(record.task.task_id, owner_id=OWNER)
    await store.list(owner_id=OWNER)
    with pytest.raises(NotReady):
        await store.get_result(record.task.task_id, owner_id=OWNER)
    assert (await store.get(record.task.task_id, owner_id=OWNER)).version == 1


# --- expiry, cleanup and retention ------------------------------------------------------


@pytest.mark.anyio
async def test_an_expired_task_stays_readable_until_cleanup(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await expired_task(store)
    stored = await store.get(record.task.task_id, owner_id=OWNER)
    assert stored.is_expired()
    assert stored == record
    listed = (await store.list(owner_id=OWNER)).tasks
    assert [task.task.task_id for task in listed] == [record.task.task_id]
    assert listed[0].is_expired()
    assert await store.cleanup_expired() == 1
    with pytest.raises(TaskNotFound):
        await store.get(record.task.task_id, owner_id=OWNER)


@pytest.mark.anyio
async def test_cleanup_expired_purges_the_expired_tasks_and_counts_them(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    live = await store.create(METHOD, owner_id=OWNER)
    gone = [
        await store.create(METHOD, owner_id=owner, ttl_ms=SHORT_TTL_MS)
        for owner in (OWNER, "carol")
    ]
    await anyio.sleep(AFTER_SHORT_TTL)
    assert await store.cleanup_expired() == 2
    for record in gone:
        with pytest.raises(TaskNotFound):
            await store.get(record.task.task_id, owner_id=record.owner_id)
    assert await store.get(live.task.task_id, owner_id=OWNER) == live
    assert await all_task_ids(store) == [live.task.task_id]


@pytest.mark.anyio
async def test_cleanup_expired_with_nothing_expired_purges_nothing(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER)
    assert await store.cleanup_expired() == 0
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_cleanup_expired_counts_each_task_once(async_make_store: StoreFactory) -> None:
    store = async_make_store()
    await expired_task(store)
    assert await store.cleanup_expired() == 1
    assert await store.cleanup_expired() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("operation", MUTATIONS)
async def test_a_mutation_of_an_expired_task_raises_task_expired_and_changes_nothing(
    async_make_store: StoreFactory, operation: str
) -> None:
    store = async_make_store()
    record = await expired_task(store)
    with pytest.raises(TaskExpired) as raised:
        await mutate(store, operation, record.task.task_id, OWNER)
    assert raised.value.code == -32602
    assert raised.value.task_id == record.task.task_id
    assert await store.get(record.task.task_id, owner_id=OWNER) == record


@pytest.mark.anyio
async def test_get_result_of_an_expired_task_raises_task_expired(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=500)
    await store.complete_with_result(record.task.task_id, COMPLETED, None, "late", owner_id=OWNER)
    await anyio.sleep(seconds_until(record.expires_at, extra_ms=20))
    with pytest.raises(TaskExpired):
        await store.get_result(record.task.task_id, owner_id=OWNER)


@pytest.mark.anyio
async def test_the_ttl_counts_from_creation_and_never_restarts(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store()
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=600)
    task_id = record.task.task_id
    await anyio.sleep(0.1)
    updated = await store.set_variables(task_id, {"progress": 50}, owner_id=OWNER)
    assert updated.expires_at == record.expires_at
    assert updated.task.ttl == 600
    # wait until 600 ms after the creation: less than 600 ms after the update
    await anyio.sleep(seconds_until(record.expires_at, extra_ms=20))
    assert (await store.get(task_id, owner_id=OWNER)).is_expired()
    with pytest.raises(TaskExpired):
        await store.update_status(task_id, COMPLETED, owner_id=OWNER)


@pytest.mark.anyio
async def test_an_expired_task_disappears_by_itself_after_the_retention(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(expired_retention_ms=400))
    record = await store.create(METHOD, owner_id=OWNER, ttl_ms=100)
    await anyio.sleep(seconds_until(record.expires_at, extra_ms=20))  # within the retention
    assert (await store.get(record.task.task_id, owner_id=OWNER)).is_expired()
    await anyio.sleep(seconds_until(record.expires_at, extra_ms=400 + 100))  # past it
    with pytest.raises(TaskNotFound):
        await store.get(record.task.task_id, owner_id=OWNER)
    assert (await store.list(owner_id=OWNER)).tasks == []


@pytest.mark.anyio
async def test_a_task_gone_after_its_retention_is_not_counted_by_cleanup(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(config=StoreConfig(expired_retention_ms=50))
    await store.create(METHOD, owner_id=OWNER, ttl_ms=50)
    await anyio.sleep(0.25)  # gone by now, nobody has looked at it
    assert await store.cleanup_expired() == 0


@pytest.mark.anyio
async def test_a_task_gone_after_its_retention_frees_its_quota(
    async_make_store: StoreFactory,
) -> None:
    store = async_make_store(
        config=StoreConfig(expired_retention_ms=50),
        security=SecurityConfig(max_tasks_per_owner=1),
    )
    await store.create(METHOD, owner_id=OWNER, ttl_ms=50)
    await anyio.sleep(0.25)
    record = await store.create(METHOD, owner_id=OWNER)
    assert await all_task_ids(store) == [record.task.task_id]


# --- config, errors, lifecycle ------------------------------------------------------------


@pytest.mark.anyio
async def test_the_store_exposes_its_config(async_make_store: StoreFactory) -> None:
    config = StoreConfig(default_ttl_ms=1_000, list_default_limit=7)
    assert async_make_store(config=config).config == config
    assert async_make_store().config == StoreConfig()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TaskNotFound, -32602),
        (TaskExpired, -32602),
        (InvalidTransition, -32602),
        (NotReady, -32602),
        (NoResult, -32602),
        (WaitTimeout, -32603),
        (InvalidArgument, -32602),
        (VariableSizeExceeded, -32602),
        (AnonymousAccessDenied, -32602),
        (ResourceExhausted, -32603),
        (ConcurrentModification, -32603),
        (StoreUnavailable, -32603),
        (StorageCorrupted, -32603),
    ],
)
def test_every_error_carries_its_json_rpc_code(error: type[TaskStoreError], code: int) -> None:
    assert issubclass(error, TaskStoreError)
    assert error.code == code


@pytest.mark.anyio
async def test_leaving_the_context_manager_closes_the_store(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = async_make_store()
    closed: list[str] = []

    async def record_close() -> None:
        closed.append("closed")

    monkeypatch.setattr(store, "aclose", record_close)
    async with store as entered:
        assert entered is store
        assert closed == []
    assert closed == ["closed"]


@pytest.mark.anyio
async def test_the_context_manager_closes_the_store_when_an_error_escapes(
    async_make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = async_make_store()
    closed: list[str] = []

    async def record_close() -> None:
        closed.append("closed")

    monkeypatch.setattr(store, "aclose", record_close)
    with pytest.raises(TaskNotFound):
        async with store:
            await store.get("missing", owner_id=OWNER)
    assert closed == ["closed"]
