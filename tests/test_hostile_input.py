"""Hostile input: every public operation answers it with a typed error, writes nothing, and
the store keeps working.

Each test is driven by hypothesis and runs on the sync and the async store over every
backend of the conftest fixtures (memory, redis, cluster). A refused call is checked
three ways: the error is the exact ``TaskStoreError`` subclass expected (and names the
problem), the watched tasks read back identical (version, status, variables, result,
timestamps) and the owners' listings are unchanged, and on Redis the server applied no
write at all (its count of changes stayed the same). Then a normal operation must still
succeed.

Examples share one store per test, so each example works on tasks of its own (a fresh
owner id, or a before/after comparison for the hostile owner ids that examples reuse).

The last test is a state machine of two owners' interleaved operations: nothing one
owner does ever returns, lists, changes or reveals a task of the other.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import functools
import json
import operator
import reprlib
import string
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import (
    TRANSITIONS,
    AnonymousAccessDenied,
    InvalidArgument,
    InvalidTransition,
    NoResult,
    NotReady,
    SecurityConfig,
    StoreConfig,
    TaskNotFound,
    TaskPage,
    TaskRecord,
    TaskStatus,
    TaskStoreError,
    VariableSizeExceeded,
)
from taskstore_redis._core.cursor import encode_cursor
from taskstore_redis._core.validation import INT64_MAX, INT64_MIN, MAX_ID_LENGTH
from taskstore_redis.backend import ListPosition
from tests.conftest import AsyncStoreFactory, SyncStoreFactory

MAX_STRING = 64
MAX_DEPTH = 4
MAX_VARIABLES = 2048
MAX_RESULT = 2048
MAX_TTL = 3_600_000
LIST_MAX = 20
CONFIG = StoreConfig(
    max_string_length=MAX_STRING,
    max_variable_depth=MAX_DEPTH,
    max_variable_size_bytes=MAX_VARIABLES,
    max_result_size_bytes=MAX_RESULT,
    default_ttl_ms=600_000,
    max_ttl_ms=MAX_TTL,
    list_default_limit=10,
    list_max_limit=LIST_MAX,
)
SECURITY = SecurityConfig(max_tasks_per_owner=None)
"""No quota: hostile owner ids are reused by many examples."""

METHOD = "tools/call"
ANONYMOUS = ("", "local")
TERMINAL = [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED]
STATUS_VALUES = frozenset(status.value for status in TaskStatus)

HOSTILE = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,  # oversized input is the point of some tests here
    ],
)
"""Examples share the function-scoped store; each one builds tasks of its own."""

pytestmark = pytest.mark.anyio


# --- one interface over the sync and the async store ----------------------------------


class AsyncStore:
    """The async store, called as it is."""

    def __init__(self, store: tsa.GenericTaskStore) -> None:
        self._store = store

    async def create(self, request_method: Any, ttl_ms: Any = None, *, owner_id: Any) -> TaskRecord:
        return await self._store.create(request_method, ttl_ms, owner_id=owner_id)

    async def get(self, task_id: Any, *, owner_id: Any) -> TaskRecord:
        return await self._store.get(task_id, owner_id=owner_id)

    async def update_status(
        self, task_id: Any, status: Any, status_message: Any = None, *, owner_id: Any
    ) -> TaskRecord:
        return await self._store.update_status(task_id, status, status_message, owner_id=owner_id)

    async def set_variables(self, task_id: Any, variables: Any, *, owner_id: Any) -> TaskRecord:
        return await self._store.set_variables(task_id, variables, owner_id=owner_id)

    async def set_result(self, task_id: Any, result: Any, *, owner_id: Any) -> None:
        await self._store.set_result(task_id, result, owner_id=owner_id)

    async def get_result(self, task_id: Any, *, owner_id: Any) -> Any:
        return await self._store.get_result(task_id, owner_id=owner_id)

    async def complete_with_result(
        self, task_id: Any, status: Any, status_message: Any, result: Any, *, owner_id: Any
    ) -> TaskRecord:
        return await self._store.complete_with_result(
            task_id, status, status_message, result, owner_id=owner_id
        )

    async def cancel(self, task_id: Any, *, owner_id: Any) -> TaskRecord:
        return await self._store.cancel(task_id, owner_id=owner_id)

    async def list(self, *, owner_id: Any, cursor: Any = None, limit: Any = None) -> TaskPage:
        return await self._store.list(owner_id=owner_id, cursor=cursor, limit=limit)


class SyncStore:
    """The blocking store, behind the same awaitable interface (it never awaits)."""

    def __init__(self, store: ts.GenericTaskStore) -> None:
        self._store = store

    async def create(self, request_method: Any, ttl_ms: Any = None, *, owner_id: Any) -> TaskRecord:
        return self._store.create(request_method, ttl_ms, owner_id=owner_id)

    async def get(self, task_id: Any, *, owner_id: Any) -> TaskRecord:
        return self._store.get(task_id, owner_id=owner_id)

    async def update_status(
        self, task_id: Any, status: Any, status_message: Any = None, *, owner_id: Any
    ) -> TaskRecord:
        return self._store.update_status(task_id, status, status_message, owner_id=owner_id)

    async def set_variables(self, task_id: Any, variables: Any, *, owner_id: Any) -> TaskRecord:
        return self._store.set_variables(task_id, variables, owner_id=owner_id)

    async def set_result(self, task_id: Any, result: Any, *, owner_id: Any) -> None:
        self._store.set_result(task_id, result, owner_id=owner_id)

    async def get_result(self, task_id: Any, *, owner_id: Any) -> Any:
        return self._store.get_result(task_id, owner_id=owner_id)

    async def complete_with_result(
        self, task_id: Any, status: Any, status_message: Any, result: Any, *, owner_id: Any
    ) -> TaskRecord:
        return self._store.complete_with_result(
            task_id, status, status_message, result, owner_id=owner_id
        )

    async def cancel(self, task_id: Any, *, owner_id: Any) -> TaskRecord:
        return self._store.cancel(task_id, owner_id=owner_id)

    async def list(self, *, owner_id: Any, cursor: Any = None, limit: Any = None) -> TaskPage:
        return self._store.list(owner_id=owner_id, cursor=cursor, limit=limit)


Store = SyncStore | AsyncStore


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store(
    flavor: str, sync_make_store: SyncStoreFactory, async_make_store: AsyncStoreFactory
) -> Store:
    """One store with small limits, shared by every example of a test."""
    if flavor == "sync":
        return SyncStore(sync_make_store(CONFIG, SECURITY))
    return AsyncStore(async_make_store(CONFIG, SECURITY))


class StorageProbe:
    """Counts the writes a Redis server (or every primary of a cluster) has applied.

    Redis counts every change to the dataset, including those made by scripts, in
    ``rdb_changes_since_last_save``; the fixture servers never save, so the count only
    grows, and key expiry does not add to it. Nothing else writes to these servers while
    a test runs, so an unchanged count proves that nothing at all was written: stronger
    than comparing the keys under the test's prefix, and O(1) per check. On the memory
    backend the count is always 0: the checks through the store's API remain.
    """

    def __init__(self, kind: str, client: Any) -> None:
        self._kind = kind
        self._client = client

    def writes(self) -> int:
        if self._client is None:
            return 0
        if self._kind == "cluster":
            primaries = self._client.get_primaries()
            return sum(
                int(
                    self._client.info("persistence", target_nodes=node)[
                        "rdb_changes_since_last_save"
                    ]
                )
                for node in primaries
            )
        return int(self._client.info("persistence")["rdb_changes_since_last_save"])


@pytest.fixture
def probe(backend_kind: str, backend_url: str | None) -> Iterator[StorageProbe]:
    if backend_url is None:
        yield StorageProbe(backend_kind, None)
        return
    client: Any = (
        redis.RedisCluster.from_url(backend_url)
        if backend_kind == "cluster"
        else redis.Redis.from_url(backend_url)
    )
    try:
        yield StorageProbe(backend_kind, client)
    finally:
        client.close()


# --- helpers ----------------------------------------------------------------------------


def fresh_owner() -> str:
    """An owner id no other example uses (not drawn, so shrinking never repeats it)."""
    return f"owner-{uuid.uuid4().hex}"


def wire_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON: what the size limits count."""
    return len(json.dumps(value, separators=(",", ":")).encode())


async def all_ids(store: Store, owner_id: str) -> builtins.list[str]:
    """Every task id of the owner, following the cursors; each record must be the owner's."""
    ids: builtins.list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list(owner_id=owner_id, cursor=cursor, limit=LIST_MAX)
        assert all(record.owner_id == owner_id for record in page.tasks)
        ids.extend(record.task.task_id for record in page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            assert len(ids) == len(set(ids)), "a listing visited a task twice"
            return ids


async def refused(
    store: Store,
    probe: StorageProbe,
    call: Callable[[], Awaitable[object]],
    expected: type[TaskStoreError] | tuple[type[TaskStoreError], ...],
    *,
    watch: Sequence[tuple[str, str]] = (),
    owners: Sequence[str] = (),
) -> TaskStoreError:
    """Run ``call``, which must raise exactly ``expected`` (or one of them) and change nothing.

    ``watch`` holds (task id, owner) pairs that must read back identical; ``owners``
    whose listings must stay the same. Any error that is not a TaskStoreError escapes.
    """
    records = [await store.get(task_id, owner_id=owner) for task_id, owner in watch]
    listings = [sorted(await all_ids(store, owner)) for owner in owners]
    writes = probe.writes()
    with pytest.raises(TaskStoreError) as info:
        await call()
    error = info.value
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert type(error) in allowed, f"{type(error).__name__}: {error}"
    assert probe.writes() == writes, "a refused call wrote to Redis"
    assert [await store.get(task_id, owner_id=owner) for task_id, owner in watch] == records
    assert [sorted(await all_ids(store, owner)) for owner in owners] == listings
    return error


async def assert_still_works(store: Store, watched: Sequence[tuple[str, str]] = ()) -> None:
    """A normal create, update, read and listing succeed; so does a write to each watched task."""
    owner = fresh_owner()
    record = await store.create(METHOD, owner_id=owner)
    moved = await store.update_status(record.task.task_id, "input_required", "ok", owner_id=owner)
    assert moved.version == 2
    assert await store.get(record.task.task_id, owner_id=owner) == moved
    assert await all_ids(store, owner) == [record.task.task_id]
    for task_id, task_owner in watched:
        before = await store.get(task_id, owner_id=task_owner)
        after = await store.set_variables(task_id, {}, owner_id=task_owner)
        assert after.version == before.version + 1


def expected_id_error(value: Any, *, owner: bool) -> type[TaskStoreError] | None:
    """The error an id gets before anything is read: InvalidArgument, AnonymousAccessDenied."""
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH:
        return InvalidArgument
    if owner and value in ANONYMOUS:
        return AnonymousAccessDenied
    return None


_short = reprlib.Repr()
_short.maxlevel = 3
_short.maxstring = 60
_short.maxother = 60


@dataclass(frozen=True)
class Bad:
    """A value the store must refuse, and the words its error message must contain."""

    value: Any
    problem: str

    def __repr__(self) -> str:  # a depth bomb must not blow up the report
        return f"Bad({_short.repr(self.value)}, {self.problem!r})"


def nested(depth: int, kind: str) -> Any:
    """A value nested ``depth`` containers deep, built without recursion."""
    value: Any = 0
    for level in range(depth):
        as_list = kind == "list" or (kind == "mixed" and level % 2 == 1)
        value = [value] if as_list else {"k": value}
    return value


# --- strategies -------------------------------------------------------------------------

UNUSUAL_IDS = [
    ":",
    "a:b",
    "t:alice:x",
    "::",
    "{",
    "}",
    "}{",
    "{taskstore:3}",
    "{x}:t:y",
    "*",
    "?",
    "[",
    "]",
    "[a-z]",
    "a*b?c[d]\\",
    " ",
    "with space",
    "\x00",
    "nul\x00byte",
    "\n",
    "\r\n",
    "\t",
    "\x1b[31m",
    "\x7f",
    "%",
    "%41",
    "%2A",
    "#",
    "#" + "0" * 64,
    "ünïcødé ✓",
    "🙂",
    "\u2028",
    "\ufeff",
    "..",
    "/",
    "'\"",
]

short_valid_ids = st.one_of(
    st.sampled_from(UNUSUAL_IDS),
    st.text(max_size=24),
    st.text(alphabet=":{}*?[]\\\x00\n\r\t %#~.-_'\"/", max_size=24),
)
valid_ids = st.one_of(
    short_valid_ids,
    st.builds(
        operator.mul,
        st.sampled_from(["x", "é", "\x00", ":", "{", "🙂"]),
        st.sampled_from([10_000, MAX_ID_LENGTH]),
    ),
)
"""Unusual ids that are still valid: a str of at most MAX_ID_LENGTH characters."""

non_str_ids = st.one_of(
    st.none(),
    st.integers(),
    st.booleans(),
    st.floats(),
    st.binary(max_size=8),
    st.builds(bytearray, st.binary(max_size=4)),
    st.lists(st.text(max_size=3), max_size=2),
    st.tuples(st.text(max_size=3)),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.builds(object),
    st.just(TaskStatus),
)
too_long_ids = st.builds(
    operator.mul,
    st.sampled_from(["x", "é", ":"]),
    st.integers(MAX_ID_LENGTH + 1, MAX_ID_LENGTH + 3000),
)
invalid_ids = st.one_of(non_str_ids, too_long_ids)
valid_owner_ids = valid_ids.map(lambda owner: owner + ":" if owner in ANONYMOUS else owner)
hostile_owner_ids = st.one_of(valid_owner_ids, invalid_ids, st.sampled_from(ANONYMOUS))
hostile_task_ids = st.one_of(valid_ids, invalid_ids)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)

non_str_keys = st.one_of(
    st.integers(),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.tuples(st.integers(), st.text(max_size=2)),
    st.binary(max_size=4),
    st.frozensets(st.integers(), max_size=2),
)

non_json_objects = st.one_of(
    st.binary(max_size=8),
    st.builds(bytearray, st.binary(max_size=4)),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.text(max_size=2), max_size=3),
    st.builds(object),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(),
    st.uuids(),
    st.sampled_from([Ellipsis, len, int, range(3), memoryview(b"x")]),
)


@st.composite
def too_deep(draw: st.DrawFn) -> Bad:
    value: Any = draw(json_leaves)
    for _ in range(draw(st.integers(MAX_DEPTH + 1, 3 * MAX_DEPTH))):
        value = [value] if draw(st.booleans()) else {draw(st.text(max_size=4)): value}
    return Bad(value, f"nested deeper than {MAX_DEPTH} levels")


bad_values = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf")]).map(
        lambda value: Bad(value, "NaN and Infinity are not JSON")
    ),
    st.one_of(st.integers(min_value=INT64_MAX + 1), st.integers(max_value=INT64_MIN - 1)).map(
        lambda value: Bad(value, "integer out of the 64-bit range")
    ),
    st.text(min_size=MAX_STRING + 1, max_size=3 * MAX_STRING).map(
        lambda value: Bad(value, f"above the limit of {MAX_STRING}")
    ),
    st.dictionaries(
        st.text(min_size=MAX_STRING + 1, max_size=2 * MAX_STRING), json_leaves, min_size=1
    ).map(lambda value: Bad(value, f"object key above {MAX_STRING} characters")),
    st.dictionaries(non_str_keys, json_leaves, min_size=1, max_size=2).map(
        lambda value: Bad(value, "object keys must be str")
    ),
    non_json_objects.map(lambda value: Bad(value, "is not a JSON value")),
    too_deep(),
    st.sampled_from(["list", "dict", "mixed"]).map(
        lambda kind: Bad(nested(100_000, kind), f"nested deeper than {MAX_DEPTH} levels")
    ),
)
"""Values with exactly one problem, and the words of the error that names it."""


@st.composite
def embedded(draw: st.DrawFn, value: Any) -> Any:
    """``value`` wrapped in up to two valid containers with valid siblings."""
    for _ in range(draw(st.integers(0, 2))):
        siblings = draw(st.lists(json_leaves, max_size=2))
        if draw(st.booleans()):
            position = draw(st.integers(0, len(siblings)))
            value = [*siblings[:position], value, *siblings[position:]]
        else:
            wrapper: dict[str, Any] = {f"s{i}": sibling for i, sibling in enumerate(siblings)}
            wrapper[draw(st.text(max_size=8))] = value
            value = wrapper
    return value


surrogate_text = st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=4),
    st.characters(categories=["Cs"]),
    st.text(max_size=4),
)
"""A str with a lone surrogate, as ``json.loads('"\\ud800"')`` gives."""


# --- ids --------------------------------------------------------------------------------


@given(owner=hostile_owner_ids, method=st.one_of(valid_ids, invalid_ids))
@HOSTILE
async def test_create_with_a_hostile_owner_or_request_method(
    store: Store, probe: StorageProbe, owner: Any, method: Any
) -> None:
    expected = expected_id_error(owner, owner=True) or expected_id_error(method, owner=False)
    if expected is None:  # unusual but valid: created, and listed for that owner only
        before = set(await all_ids(store, owner))
        record = await store.create(method, owner_id=owner)
        task_id = record.task.task_id
        assert (record.owner_id, record.request_method, record.version) == (owner, method, 1)
        assert record.task.status is TaskStatus.WORKING
        assert await store.get(task_id, owner_id=owner) == record
        after = await all_ids(store, owner)
        assert set(after) == before | {task_id}
        assert len(after) == len(before) + 1
        other = owner + ":" if len(owner) < MAX_ID_LENGTH else owner[:-1]
        with pytest.raises(TaskNotFound):
            await store.get(task_id, owner_id=other)
        await assert_still_works(store, [(task_id, owner)])
        return
    control = fresh_owner()
    control_task = (await store.create(METHOD, owner_id=control)).task.task_id
    owner_error = expected_id_error(owner, owner=True)
    error = await refused(
        store,
        probe,
        lambda: store.create(method, owner_id=owner),
        expected,
        watch=[(control_task, control)],
        owners=[control] if owner_error else [control, owner],
    )
    if expected is InvalidArgument:
        assert ("owner_id" if owner_error else "request_method") in str(error)
    await assert_still_works(store, [(control_task, control)])


TASK_OPERATIONS = [
    "get",
    "update_status",
    "set_variables",
    "set_result",
    "get_result",
    "complete_with_result",
    "cancel",
]


async def call_operation(store: Store, operation: str, task_id: Any, owner_id: Any) -> object:
    """Call a task operation with arguments that are valid for a working task."""
    if operation == "get":
        return await store.get(task_id, owner_id=owner_id)
    if operation == "update_status":
        return await store.update_status(task_id, "input_required", "waiting", owner_id=owner_id)
    if operation == "set_variables":
        return await store.set_variables(task_id, {"k": "v"}, owner_id=owner_id)
    if operation == "set_result":
        await store.set_result(task_id, {"answer": 42}, owner_id=owner_id)
        return None
    if operation == "get_result":
        return await store.get_result(task_id, owner_id=owner_id)
    if operation == "complete_with_result":
        return await store.complete_with_result(
            task_id, "completed", "done", [1], owner_id=owner_id
        )
    if operation == "cancel":
        return await store.cancel(task_id, owner_id=owner_id)
    raise AssertionError(operation)  # pragma: no cover


@given(operation=st.sampled_from(TASK_OPERATIONS), task_id=hostile_task_ids)
@HOSTILE
async def test_task_operations_with_a_hostile_task_id(
    store: Store, probe: StorageProbe, operation: str, task_id: Any
) -> None:
    owner = fresh_owner()
    existing = (await store.create(METHOD, owner_id=owner)).task.task_id
    expected = expected_id_error(task_id, owner=False) or TaskNotFound
    error = await refused(
        store,
        probe,
        lambda: call_operation(store, operation, task_id, owner),
        expected,
        watch=[(existing, owner)],
        owners=[owner],
    )
    if expected is TaskNotFound:
        assert str(error) == f"task not found: {task_id!r}"
        assert isinstance(error, TaskNotFound) and error.task_id == task_id
    else:
        assert "task_id" in str(error)
    await assert_still_works(store, [(existing, owner)])


@given(operation=st.sampled_from([*TASK_OPERATIONS, "list"]), owner=hostile_owner_ids)
@HOSTILE
async def test_operations_with_a_hostile_owner_id(
    store: Store, probe: StorageProbe, operation: str, owner: Any
) -> None:
    real_owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=real_owner)).task.task_id
    expected = expected_id_error(owner, owner=True)
    if operation == "list" and expected is None:  # a valid owner lists its own tasks only
        writes = probe.writes()
        ids = await all_ids(store, owner)
        assert task_id not in ids
        assert probe.writes() == writes
        return
    error = await refused(
        store,
        probe,
        (
            (lambda: store.list(owner_id=owner))
            if operation == "list"
            else (lambda: call_operation(store, operation, task_id, owner))
        ),
        expected or TaskNotFound,
        watch=[(task_id, real_owner)],
        owners=[real_owner],
    )
    if expected is None:  # another owner's task looks exactly like a missing one
        assert str(error) == f"task not found: {task_id!r}"
    elif expected is InvalidArgument:
        assert "owner_id" in str(error)
    else:
        assert isinstance(error, AnonymousAccessDenied) and error.owner_id == owner
    await assert_still_works(store, [(task_id, real_owner)])


# --- values -----------------------------------------------------------------------------

VALUE_OPERATIONS = ["set_variables", "set_result", "complete_with_result"]


async def put_value(store: Store, operation: str, task_id: str, owner: str, value: Any) -> object:
    if operation == "set_variables":
        return await store.set_variables(task_id, value, owner_id=owner)
    if operation == "set_result":
        await store.set_result(task_id, value, owner_id=owner)
        return None
    return await store.complete_with_result(task_id, "failed", "boom", value, owner_id=owner)


@st.composite
def placed_bad_values(draw: st.DrawFn) -> tuple[str, Bad]:
    """An operation, and a bad value placed somewhere in what it is given."""
    operation = draw(st.sampled_from(VALUE_OPERATIONS))
    bad = draw(bad_values)
    value = draw(embedded(bad.value))
    if operation == "set_variables" and not (isinstance(value, dict) and draw(st.booleans())):
        value = {draw(st.text(max_size=8)): value}
    return operation, Bad(value, bad.problem)


@given(placed=placed_bad_values())
@HOSTILE
async def test_values_that_are_not_plain_json_within_the_limits_are_refused(
    store: Store, probe: StorageProbe, placed: tuple[str, Bad]
) -> None:
    operation, bad = placed
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    await store.set_variables(task_id, {"before": 1}, owner_id=owner)
    error = await refused(
        store,
        probe,
        lambda: put_value(store, operation, task_id, owner, bad.value),
        InvalidArgument,
        watch=[(task_id, owner)],
    )
    assert str(error).startswith("variables: " if operation == "set_variables" else "result: ")
    assert bad.problem in str(error)
    await assert_still_works(store, [(task_id, owner)])


@given(
    variables=st.one_of(
        st.lists(json_leaves, max_size=3),
        json_leaves,
        st.tuples(st.tuples(st.text(max_size=3), st.integers())),
        st.sets(st.text(max_size=3), max_size=2),
        st.builds(object),
    )
)
@HOSTILE
async def test_variables_that_are_not_a_mapping_are_refused(
    store: Store, probe: StorageProbe, variables: Any
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    error = await refused(
        store,
        probe,
        lambda: store.set_variables(task_id, variables, owner_id=owner),
        InvalidArgument,
        watch=[(task_id, owner)],
    )
    assert "variables must be a mapping" in str(error)
    await assert_still_works(store, [(task_id, owner)])


@given(operation=st.sampled_from(["set_result", "complete_with_result"]))
@HOSTILE
async def test_a_none_result_is_refused(store: Store, probe: StorageProbe, operation: str) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    error = await refused(
        store,
        probe,
        lambda: put_value(store, operation, task_id, owner, None),
        InvalidArgument,
        watch=[(task_id, owner)],
    )
    assert "must not be None" in str(error)


@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
async def test_a_100k_deep_value_is_refused_without_recursion(
    store: Store, probe: StorageProbe, kind: str
) -> None:
    bomb = nested(100_000, kind)
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    for operation, value in [
        ("set_variables", {"bomb": bomb}),
        ("set_result", bomb),
        ("complete_with_result", bomb),
    ]:
        error = await refused(
            store,
            probe,
            functools.partial(put_value, store, operation, task_id, owner, value),
            InvalidArgument,
            watch=[(task_id, owner)],
        )
        assert f"nested deeper than {MAX_DEPTH} levels" in str(error)
    await assert_still_works(store, [(task_id, owner)])


printable_chunks = st.lists(
    st.text(alphabet=string.printable, min_size=40, max_size=MAX_STRING), min_size=50, max_size=70
)
"""At least 50 * 42 + 49 + 2 > 2048 bytes of JSON, every string within the length limit."""


@given(operation=st.sampled_from(["set_result", "complete_with_result"]), result=printable_chunks)
@HOSTILE
async def test_a_result_above_its_size_limit_is_refused(
    store: Store, probe: StorageProbe, operation: str, result: list[str]
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    error = await refused(
        store,
        probe,
        lambda: put_value(store, operation, task_id, owner, result),
        VariableSizeExceeded,
        watch=[(task_id, owner)],
    )
    assert isinstance(error, VariableSizeExceeded)
    assert (error.limit_bytes, error.actual_bytes) == (MAX_RESULT, wire_size(result))
    await assert_still_works(store, [(task_id, owner)])


@given(chunks=printable_chunks, split=st.integers(0, 20))
@HOSTILE
async def test_merged_variables_above_their_size_limit_are_refused(
    store: Store, probe: StorageProbe, chunks: list[str], split: int
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    existing = {f"e{i}": chunk for i, chunk in enumerate(chunks[:split])}
    incoming = {f"n{i}": chunk for i, chunk in enumerate(chunks[split:])}
    await store.set_variables(task_id, existing, owner_id=owner)
    error = await refused(
        store,
        probe,
        lambda: store.set_variables(task_id, incoming, owner_id=owner),
        VariableSizeExceeded,
        watch=[(task_id, owner)],
    )
    assert isinstance(error, VariableSizeExceeded)
    merged_size = wire_size({**existing, **incoming})
    assert (error.limit_bytes, error.actual_bytes) == (MAX_VARIABLES, merged_size)
    await assert_still_works(store, [(task_id, owner)])


# --- statuses, messages and TTLs ----------------------------------------------------------

bad_statuses = st.one_of(
    st.text(max_size=16).filter(lambda text: text not in STATUS_VALUES),
    st.sampled_from(
        [
            "WORKING",
            "Working",
            " working",
            "working ",
            "working\x00",
            "input-required",
            "INPUT_REQUIRED",
            "canceled",
            "complete",
            "done",
            "error",
        ]
    ),
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=16),
    st.just(b"working"),
    st.lists(st.sampled_from(sorted(STATUS_VALUES)), max_size=2),
    st.builds(object),
)
bad_messages = st.one_of(
    st.text(min_size=MAX_STRING + 1, max_size=3 * MAX_STRING).map(
        lambda text: Bad(text, f"above the limit of {MAX_STRING}")
    ),
    st.one_of(st.integers(), st.binary(max_size=8), st.lists(st.text(max_size=3), max_size=2)).map(
        lambda value: Bad(value, "status_message must be a str or None")
    ),
)


@given(
    operation=st.sampled_from(["update_status", "complete_with_result"]),
    status=bad_statuses,
    missing=st.booleans(),
)
@HOSTILE
async def test_an_unknown_status_is_refused_before_the_task_is_looked_up(
    store: Store, probe: StorageProbe, operation: str, status: Any, missing: bool
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    target = str(uuid.uuid4()) if missing else task_id

    async def call() -> object:
        if operation == "update_status":
            return await store.update_status(target, status, "m", owner_id=owner)
        return await store.complete_with_result(target, status, "m", {"r": 1}, owner_id=owner)

    error = await refused(store, probe, call, InvalidArgument, watch=[(task_id, owner)])
    assert str(error).startswith(f"unknown status {status!r}")
    await assert_still_works(store, [(task_id, owner)])


@given(
    operation=st.sampled_from(["update_status", "complete_with_result"]),
    message=bad_messages,
)
@HOSTILE
async def test_a_bad_status_message_is_refused(
    store: Store, probe: StorageProbe, operation: str, message: Bad
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id

    async def call() -> object:
        if operation == "update_status":
            return await store.update_status(
                task_id, "input_required", message.value, owner_id=owner
            )
        return await store.complete_with_result(
            task_id, "completed", message.value, 1, owner_id=owner
        )

    error = await refused(store, probe, call, InvalidArgument, watch=[(task_id, owner)])
    assert message.problem in str(error)
    await assert_still_works(store, [(task_id, owner)])


@given(
    status=st.sampled_from(["working", "input_required", TaskStatus.WORKING]),
    start=st.sampled_from(["working", "input_required"]),
)
@HOSTILE
async def test_complete_with_result_refuses_a_status_that_is_not_terminal(
    store: Store, probe: StorageProbe, status: Any, start: str
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    if start != "working":
        await store.update_status(task_id, start, owner_id=owner)
    error = await refused(
        store,
        probe,
        lambda: store.complete_with_result(task_id, status, None, {"r": 1}, owner_id=owner),
        InvalidArgument,
        watch=[(task_id, owner)],
    )
    assert "needs a terminal status" in str(error)


@given(
    start=st.sampled_from(list(TaskStatus)),
    target=st.sampled_from(list(TaskStatus)),
    as_string=st.booleans(),
)
@HOSTILE
async def test_a_forbidden_move_is_an_invalid_transition_and_writes_nothing(
    store: Store, probe: StorageProbe, start: TaskStatus, target: TaskStatus, as_string: bool
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    if start is not TaskStatus.WORKING:
        await store.update_status(task_id, start, owner_id=owner)
    if target in TRANSITIONS[start]:
        moved = await store.update_status(
            task_id, target.value if as_string else target, owner_id=owner
        )
        assert moved.task.status is target
        return
    error = await refused(
        store,
        probe,
        lambda: store.update_status(task_id, target.value if as_string else target, owner_id=owner),
        InvalidTransition,
        watch=[(task_id, owner)],
    )
    assert isinstance(error, InvalidTransition)
    assert (error.from_status, error.to_status) == (start.value, target.value)
    await assert_still_works(store, [(task_id, owner)])


bad_ttls = st.one_of(
    st.integers(max_value=-1).map(lambda ttl: Bad(ttl, "must not be negative")),
    st.integers(min_value=MAX_TTL + 1).map(lambda ttl: Bad(ttl, "above the maximum")),
    st.one_of(
        st.floats(),
        st.booleans(),
        st.text(max_size=8),
        st.binary(max_size=4),
        st.decimals(),
        st.lists(st.integers(0, 10), max_size=1),
        st.builds(datetime.now),
    ).map(lambda ttl: Bad(ttl, "ttl_ms must be an int or None")),
)


@given(ttl=bad_ttls, owner=st.one_of(st.just(None), valid_owner_ids))
@HOSTILE
async def test_create_with_a_bad_ttl_is_refused_and_lists_nothing_new(
    store: Store, probe: StorageProbe, ttl: Bad, owner: str | None
) -> None:
    owner = owner if owner is not None else fresh_owner()
    existing = (await store.create(METHOD, owner_id=owner)).task.task_id
    error = await refused(
        store,
        probe,
        lambda: store.create(METHOD, ttl.value, owner_id=owner),
        InvalidArgument,
        watch=[(existing, owner)],
        owners=[owner],
    )
    assert ttl.problem in str(error)
    record = await store.create(METHOD, MAX_TTL, owner_id=owner)  # a valid TTL still works
    assert record.task.ttl == MAX_TTL
    await assert_still_works(store, [(existing, owner)])


# --- listing: limits and cursors ---------------------------------------------------------

bad_limits = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=LIST_MAX + 1),
    st.floats(),
    st.booleans(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(1, 5), max_size=1),
    st.decimals(allow_nan=False),
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


json_values = st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
)
malformed_cursors = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.ascii_letters + string.digits + "-_=", max_size=120),
    st.text(min_size=4097, max_size=6000),
    st.binary(max_size=64).map(b64),
    json_values.map(lambda value: b64(json.dumps(value).encode())),
)
well_formed_foreign_cursors = st.tuples(
    st.integers(INT64_MIN, INT64_MAX),
    st.text(max_size=20),
    st.integers(INT64_MIN, INT64_MAX),
    st.text(max_size=8),
).map(lambda parts: b64(json.dumps(list(parts)).encode()))
"""The shape of a cursor, but of no owner's listing."""
non_str_cursors = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.builds(object),
)


async def listing_setup(store: Store) -> tuple[str, list[str], str, str]:
    """An owner with three tasks, a next cursor of its own and one of another owner."""
    owner, other = fresh_owner(), fresh_owner()
    for _ in range(3):
        await store.create(METHOD, owner_id=owner)
    for _ in range(2):
        await store.create(METHOD, owner_id=other)
    own_cursor = (await store.list(owner_id=owner, limit=1)).next_cursor
    foreign_cursor = (await store.list(owner_id=other, limit=1)).next_cursor
    assert own_cursor is not None and foreign_cursor is not None
    return owner, await all_ids(store, owner), own_cursor, foreign_cursor


@given(limit=bad_limits)
@HOSTILE
async def test_list_refuses_a_bad_limit(store: Store, probe: StorageProbe, limit: Any) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    error = await refused(
        store,
        probe,
        lambda: store.list(owner_id=owner, limit=limit),
        InvalidArgument,
        owners=[owner],
    )
    assert "limit must be" in str(error)
    await assert_still_works(store, [(task_id, owner)])


@given(
    cursor=st.one_of(
        malformed_cursors.map(lambda cursor: Bad(cursor, "malformed cursor")),
        non_str_cursors.map(lambda cursor: Bad(cursor, "malformed cursor")),
        well_formed_foreign_cursors.map(
            lambda cursor: Bad(cursor, "cursor does not belong to this listing")
        ),
        st.just(Bad("", "malformed cursor")),
        st.just(Bad("<foreign>", "cursor does not belong to this listing")),
        st.just(Bad("<other version>", "cursor does not belong to this listing")),
    ),
    limit=st.one_of(st.none(), st.integers(1, LIST_MAX)),
)
@HOSTILE
async def test_list_refuses_a_malformed_or_foreign_cursor(
    store: Store, probe: StorageProbe, cursor: Bad, limit: int | None
) -> None:
    owner, ids, _, foreign = await listing_setup(store)
    value = cursor.value
    if value == "<foreign>":
        value = foreign
    elif value == "<other version>":
        raw = json.loads(base64.urlsafe_b64decode(foreign + "=" * (-len(foreign) % 4)))
        value = b64(json.dumps([2, *raw[1:]]).encode())
    error = await refused(
        store,
        probe,
        lambda: store.list(owner_id=owner, cursor=value, limit=limit),
        InvalidArgument,
        owners=[owner],
    )
    assert str(error) == cursor.problem
    await assert_still_works(store, [(ids[0], owner)])


@given(
    position=st.integers(0, 300),
    replacement=st.characters(codec="ascii"),
    limit=st.integers(1, 4),
)
@HOSTILE
async def test_a_tampered_cursor_is_refused_or_lists_only_the_owners_tasks(
    store: Store, probe: StorageProbe, position: int, replacement: str, limit: int
) -> None:
    owner, ids, own, _ = await listing_setup(store)
    index = position % len(own)
    tampered = own[:index] + replacement + own[index + 1 :]
    writes = probe.writes()
    try:
        page = await store.list(owner_id=owner, cursor=tampered, limit=limit)
    except InvalidArgument as error:
        assert str(error) in ("malformed cursor", "cursor does not belong to this listing")
    else:
        found = [record.task.task_id for record in page.tasks]
        assert set(found) <= set(ids)
        assert len(found) <= limit
        assert all(record.owner_id == owner for record in page.tasks)
    assert probe.writes() == writes


@given(
    created_at_ms=st.one_of(
        st.integers(INT64_MIN, -1).map(lambda ms: ("before all", ms)),
        st.integers(10**14, INT64_MAX).map(lambda ms: ("after all", ms)),
    ),
    task_id=st.one_of(short_valid_ids, st.uuids().map(str)),
    limit=st.integers(1, LIST_MAX),
)
@HOSTILE
async def test_a_well_formed_cursor_at_any_position_lists_only_the_owners_tasks(
    store: Store, probe: StorageProbe, created_at_ms: tuple[str, int], task_id: str, limit: int
) -> None:
    owner, ids, _, _ = await listing_setup(store)
    where, ms = created_at_ms
    cursor = encode_cursor(owner, ListPosition(ms, task_id))
    writes = probe.writes()
    page = await store.list(owner_id=owner, cursor=cursor, limit=limit)
    found = [record.task.task_id for record in page.tasks]
    assert found == ([] if where == "before all" else ids[:limit])
    assert probe.writes() == writes


# --- library defects: each test below pins one ---------------------------------------------

Call = Callable[[], Awaitable[object]]
ReadBack = Callable[[object], Awaitable[bool]]


async def stored_faithfully_or_refused(
    store: Store, probe: StorageProbe, call: Call, read_back: ReadBack, task: tuple[str, str]
) -> None:
    """``call`` either raises InvalidArgument and changes nothing, or stores what it was given
    (``read_back`` of its outcome is true). Any other error escapes and fails the test."""
    task_id, owner = task
    before = await store.get(task_id, owner_id=owner)
    writes = probe.writes()
    try:
        outcome = await call()
    except InvalidArgument:
        assert probe.writes() == writes
        assert await store.get(task_id, owner_id=owner) == before
    else:
        assert await read_back(outcome)
    await assert_still_works(store, [task])


@given(
    case=st.sampled_from(
        [
            "create owner",
            "create method",
            "variable key",
            "variable value",
            "result",
            "complete result",
            "update message",
            "complete message",
        ]
    ),
    text=surrogate_text,
)
@HOSTILE
async def test_a_lone_surrogate_in_a_stored_str_is_refused_or_kept(
    store: Store, probe: StorageProbe, case: str, text: str
) -> None:
    """``json.loads('"\\ud800"')`` hands out lone surrogates, which UTF-8 cannot encode: the
    store must refuse them as InvalidArgument (or keep them), never leak UnicodeEncodeError."""
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id

    async def created(outcome: object) -> bool:
        assert isinstance(outcome, TaskRecord)
        read = await store.get(outcome.task.task_id, owner_id=outcome.owner_id)
        return read == outcome and (read.owner_id, read.request_method) in (
            (text, METHOD),
            (owner, text),
        )

    async def variables(outcome: object) -> bool:
        return (await store.get(task_id, owner_id=owner)).variables in ({text: 1}, {"k": [text]})

    async def result(outcome: object) -> bool:
        return (await store.get(task_id, owner_id=owner)).result in ({"r": text}, text)

    async def message(outcome: object) -> bool:
        return (await store.get(task_id, owner_id=owner)).task.status_message == text

    cases: dict[str, tuple[Call, ReadBack]] = {
        "create owner": (lambda: store.create(METHOD, owner_id=text), created),
        "create method": (lambda: store.create(text, owner_id=owner), created),
        "variable key": (
            lambda: store.set_variables(task_id, {text: 1}, owner_id=owner),
            variables,
        ),
        "variable value": (
            lambda: store.set_variables(task_id, {"k": [text]}, owner_id=owner),
            variables,
        ),
        "result": (lambda: store.set_result(task_id, {"r": text}, owner_id=owner), result),
        "complete result": (
            lambda: store.complete_with_result(task_id, "completed", None, text, owner_id=owner),
            result,
        ),
        "update message": (
            lambda: store.update_status(task_id, "input_required", text, owner_id=owner),
            message,
        ),
        "complete message": (
            lambda: store.complete_with_result(task_id, "failed", text, 1, owner_id=owner),
            message,
        ),
    }
    call, read_back = cases[case]
    await stored_faithfully_or_refused(store, probe, call, read_back, (task_id, owner))


@given(
    case=st.sampled_from(["get task id", "cancel task id", "get owner", "list owner"]),
    text=surrogate_text,
)
@HOSTILE
async def test_a_lone_surrogate_in_an_id_finds_nothing(
    store: Store, probe: StorageProbe, case: str, text: str
) -> None:
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    if case == "list owner":
        with contextlib.suppress(InvalidArgument):  # refusing the id would be as right
            assert await all_ids(store, text) == []
    else:
        calls: dict[str, Call] = {
            "get task id": lambda: store.get(text, owner_id=owner),
            "cancel task id": lambda: store.cancel(text, owner_id=owner),
            "get owner": lambda: store.get(task_id, owner_id=text),
        }
        # no task can have such an id; refusing the id itself would be as right
        await refused(
            store, probe, calls[case], (TaskNotFound, InvalidArgument), watch=[(task_id, owner)]
        )
    await assert_still_works(store, [(task_id, owner)])


class Int(int):
    pass


class Float(float):
    pass


class Str(str):
    __slots__ = ()


@given(
    case=st.sampled_from(
        [
            "variable int",
            "variable float",
            "variable str",
            "result int",
            "result str",
            "message str",
            "owner str",
            "method str",
        ]
    ),
)
@HOSTILE
async def test_a_subclass_of_a_json_type_is_stored_as_its_value_or_refused(
    store: Store, probe: StorageProbe, case: str
) -> None:
    """Validation accepts subclasses of int, float and str (it checks isinstance), so the
    store must store them as their plain value, or refuse them as InvalidArgument."""
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    sub_owner = Str(fresh_owner())

    async def created(outcome: object) -> bool:
        assert isinstance(outcome, TaskRecord)
        read = await store.get(outcome.task.task_id, owner_id=outcome.owner_id)
        return (read.owner_id, read.request_method) in ((sub_owner, METHOD), (owner, "m"))

    async def variables(outcome: object) -> bool:
        stored = (await store.get(task_id, owner_id=owner)).variables
        return stored in ({"k": 7}, {"k": 1.5}, {"k": "s"})

    async def result(outcome: object) -> bool:
        return (await store.get(task_id, owner_id=owner)).result in (7, ["s"])

    async def message(outcome: object) -> bool:
        return (await store.get(task_id, owner_id=owner)).task.status_message == "m"

    cases: dict[str, tuple[Call, ReadBack]] = {
        "variable int": (
            lambda: store.set_variables(task_id, {"k": Int(7)}, owner_id=owner),
            variables,
        ),
        "variable float": (
            lambda: store.set_variables(task_id, {"k": Float(1.5)}, owner_id=owner),
            variables,
        ),
        "variable str": (
            lambda: store.set_variables(task_id, {"k": Str("s")}, owner_id=owner),
            variables,
        ),
        "result int": (lambda: store.set_result(task_id, Int(7), owner_id=owner), result),
        "result str": (lambda: store.set_result(task_id, [Str("s")], owner_id=owner), result),
        "message str": (
            lambda: store.update_status(task_id, "input_required", Str("m"), owner_id=owner),
            message,
        ),
        "owner str": (lambda: store.create(METHOD, owner_id=sub_owner), created),
        "method str": (lambda: store.create(Str("m"), owner_id=owner), created),
    }
    call, read_back = cases[case]
    await stored_faithfully_or_refused(store, probe, call, read_back, (task_id, owner))


class HidingDict(dict[str, Any]):
    """A dict whose items() shows nothing of what it holds."""

    def items(self) -> Any:
        return iter(())


class HidingList(list[Any]):
    """A list whose iteration shows nothing of what it holds."""

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class ChangingMapping(Mapping[str, Any]):
    """A mapping that reads "ok" once, then a string past the length limit."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return "ok" if self.reads == 1 else "y" * (MAX_STRING + 36)

    def __iter__(self) -> Iterator[str]:
        return iter(["k"])

    def __len__(self) -> int:
        return 1


def deceiving(case: str) -> tuple[Any, Any]:
    """A value that shows validation one thing and the encoder another, and what
    validation saw of it."""
    if case == "hidden NaN":
        return HidingDict(x=float("nan")), {}
    if case == "hidden object":
        return HidingDict(x=object()), {}
    if case == "hidden long string":
        return HidingList(["z" * 500]), []
    return ChangingMapping(), {"k": "ok"}


DECEIVING_CASES = [
    *(
        (operation, case)
        for operation in ("set_variables", "set_result")
        for case in ("hidden NaN", "hidden object", "hidden long string")
    ),
    ("set_variables", "changing mapping"),
]


@given(operation_and_case=st.sampled_from(DECEIVING_CASES))
@HOSTILE
async def test_what_is_stored_is_what_was_validated(
    store: Store, probe: StorageProbe, operation_and_case: tuple[str, str]
) -> None:
    """The store must refuse such a value (InvalidArgument), or store exactly what it
    validated: never a NaN turned into null, a string past the limit, or a RecursionError."""
    operation, case = operation_and_case
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    value, seen = deceiving(case)
    if operation == "set_variables" and case != "changing mapping":
        value, seen = {"k": value}, {"k": seen}

    async def kept(outcome: object) -> bool:
        after = await store.get(task_id, owner_id=owner)
        return bool((after.variables if operation == "set_variables" else after.result) == seen)

    await stored_faithfully_or_refused(
        store,
        probe,
        functools.partial(put_value, store, operation, task_id, owner, value),
        kept,
        (task_id, owner),
    )


@given(operation=st.sampled_from(["set_variables", "set_result", "complete_with_result"]))
@HOSTILE
async def test_a_depth_bomb_hidden_in_a_list_subclass_is_refused_without_recursion(
    store: Store, probe: StorageProbe, operation: str
) -> None:
    """A list subclass whose iteration shows nothing passes the depth check with a
    100,000-deep list inside; encoding it must not raise RecursionError."""
    owner = fresh_owner()
    task_id = (await store.create(METHOD, owner_id=owner)).task.task_id
    bomb = HidingList([nested(100_000, "list")])
    value = {"k": bomb} if operation == "set_variables" else bomb
    seen = {"k": []} if operation == "set_variables" else []

    async def kept(outcome: object) -> bool:
        after = await store.get(task_id, owner_id=owner)
        return bool((after.variables if operation == "set_variables" else after.result) == seen)

    await stored_faithfully_or_refused(
        store,
        probe,
        functools.partial(put_value, store, operation, task_id, owner, value),
        kept,
        (task_id, owner),
    )


# --- owner isolation, as a property -----------------------------------------------------------

OWNER_SUFFIXES = st.one_of(
    st.sampled_from(["", ":", ":x", "x", "{", "}", "*", "?", "[a]", "\x00", "%3A", " ", "é"]),
    st.text(max_size=6),
    st.just("x" * 200),
)


@dataclass
class ModelTask:
    owner: int
    version: int
    status: TaskStatus
    result: Any = None


class OwnerIsolation(RuleBasedStateMachine):
    """Two owners' interleaved operations, each judged against a model of the tasks."""

    def __init__(self, store: ts.GenericTaskStore) -> None:
        super().__init__()
        self.store = store
        self.base = uuid.uuid4().hex
        self.owners = [self.base + "-a", self.base + "-b"]
        self.tasks: dict[str, ModelTask] = {}

    @initialize(first=OWNER_SUFFIXES, second=OWNER_SUFFIXES)
    def choose_owners(self, first: str, second: str) -> None:
        """Owners that may be prefixes of each other, or differ by one separator."""
        a, b = self.base + first, self.base + second
        self.owners = [a, b if b != a else a + ":"]
        note(f"owners: {self.owners!r}")

    # the target of an access: any task of either owner, or something like one

    def target(self, data: st.DataObject) -> str:
        pick_real = data.draw(st.integers(0, 3), label="real?") > 0
        if self.tasks and pick_real:
            return data.draw(st.sampled_from(list(self.tasks)), label="task")
        garbage = [st.uuids().map(str), short_valid_ids]
        if self.tasks:
            real = st.sampled_from(list(self.tasks))
            garbage.append(
                st.one_of(
                    real.map(str.upper),
                    real.map(lambda task_id: task_id + "*"),
                    real.map(lambda task_id: task_id[:-1]),
                    real.map(lambda task_id: "{" + task_id + "}"),
                    real.map(lambda task_id: self.owners[1] + ":" + task_id),
                )
            )
        return data.draw(st.one_of(garbage), label="garbage")

    def mine(self, actor: int, task_id: str) -> ModelTask | None:
        task = self.tasks.get(task_id)
        return task if task is not None and task.owner == actor else None

    def not_found(self, actor: int, task_id: str, call: Callable[[], object]) -> None:
        """``call`` must raise TaskNotFound exactly as for a random missing id."""
        with pytest.raises(TaskStoreError) as info:
            call()
        error = info.value
        assert type(error) is TaskNotFound, f"{type(error).__name__}: {error}"
        assert error.task_id == task_id
        missing = str(uuid.uuid4())
        with pytest.raises(TaskNotFound) as reference:
            self.store.get(missing, owner_id=self.owners[actor])
        shown = str(error).replace(repr(task_id), "<id>")
        assert shown == str(reference.value).replace(repr(missing), "<id>")
        assert error.code == reference.value.code

    def check_record(self, record: TaskRecord, actor: int) -> None:
        task = self.tasks[record.task.task_id]
        assert task.owner == actor
        assert record.owner_id == self.owners[actor]
        assert (record.version, record.task.status) == (task.version, task.status)

    @rule(actor=st.integers(0, 1))
    def create(self, actor: int) -> None:
        record = self.store.create(METHOD, owner_id=self.owners[actor])
        assert record.task.task_id not in self.tasks
        self.tasks[record.task.task_id] = ModelTask(actor, 1, TaskStatus.WORKING)

    @rule(actor=st.integers(0, 1), data=st.data())
    def get(self, actor: int, data: st.DataObject) -> None:
        task_id = self.target(data)
        if self.mine(actor, task_id) is None:
            self.not_found(
                actor, task_id, lambda: self.store.get(task_id, owner_id=self.owners[actor])
            )
        else:
            self.check_record(self.store.get(task_id, owner_id=self.owners[actor]), actor)

    @rule(actor=st.integers(0, 1), data=st.data(), status=st.sampled_from(list(TaskStatus)))
    def update_status(self, actor: int, data: st.DataObject, status: TaskStatus) -> None:
        task_id = self.target(data)
        owner = self.owners[actor]
        task = self.mine(actor, task_id)
        if task is None:
            self.not_found(
                actor, task_id, lambda: self.store.update_status(task_id, status, owner_id=owner)
            )
        elif status in TRANSITIONS[task.status]:
            task.version, task.status = task.version + 1, status
            self.check_record(self.store.update_status(task_id, status, owner_id=owner), actor)
        else:
            with pytest.raises(InvalidTransition):
                self.store.update_status(task_id, status, owner_id=owner)

    @rule(actor=st.integers(0, 1), data=st.data(), value=st.integers(0, 9))
    def set_variables(self, actor: int, data: st.DataObject, value: int) -> None:
        task_id = self.target(data)
        owner = self.owners[actor]
        task = self.mine(actor, task_id)
        if task is None:
            self.not_found(
                actor,
                task_id,
                lambda: self.store.set_variables(task_id, {"v": value}, owner_id=owner),
            )
        else:
            task.version += 1
            record = self.store.set_variables(task_id, {"v": value}, owner_id=owner)
            self.check_record(record, actor)
            assert record.variables == {"v": value}

    @rule(actor=st.integers(0, 1), data=st.data(), value=st.integers(0, 9))
    def set_result(self, actor: int, data: st.DataObject, value: int) -> None:
        task_id = self.target(data)
        owner = self.owners[actor]
        task = self.mine(actor, task_id)
        if task is None:
            self.not_found(
                actor, task_id, lambda: self.store.set_result(task_id, {"r": value}, owner_id=owner)
            )
        elif task.status.is_terminal and task.result is not None:
            with pytest.raises(InvalidArgument):
                self.store.set_result(task_id, {"r": value}, owner_id=owner)
        else:
            self.store.set_result(task_id, {"r": value}, owner_id=owner)
            task.version, task.result = task.version + 1, {"r": value}

    @rule(actor=st.integers(0, 1), data=st.data(), status=st.sampled_from(TERMINAL))
    def complete(self, actor: int, data: st.DataObject, status: TaskStatus) -> None:
        task_id = self.target(data)
        owner = self.owners[actor]
        task = self.mine(actor, task_id)
        result = {"by": actor}
        if task is None:
            self.not_found(
                actor,
                task_id,
                lambda: self.store.complete_with_result(
                    task_id, status, "x", result, owner_id=owner
                ),
            )
        elif task.status.is_terminal:
            with pytest.raises(InvalidTransition):
                self.store.complete_with_result(task_id, status, "x", result, owner_id=owner)
        else:
            task.version, task.status, task.result = task.version + 1, status, result
            record = self.store.complete_with_result(task_id, status, "x", result, owner_id=owner)
            self.check_record(record, actor)

    @rule(actor=st.integers(0, 1), data=st.data())
    def cancel(self, actor: int, data: st.DataObject) -> None:
        task_id = self.target(data)
        owner = self.owners[actor]
        task = self.mine(actor, task_id)
        if task is None:
            self.not_found(actor, task_id, lambda: self.store.cancel(task_id, owner_id=owner))
        elif task.status.is_terminal:
            with pytest.raises(InvalidTransition):
                self.store.cancel(task_id, owner_id=owner)
        else:
            task.version, task.status = task.version + 1, TaskStatus.CANCELLED
            self.check_record(self.store.cancel(task_id, owner_id=owner), actor)

    @rule(actor=st.integers(0, 1), data=st.data())
    def get_result(self, actor: int, data: st.DataObject) -> None:
        task_id = self.target(data)
        owner = self.owners[actor]
        task = self.mine(actor, task_id)
        if task is None:
            self.not_found(actor, task_id, lambda: self.store.get_result(task_id, owner_id=owner))
        elif task.status.is_terminal and task.result is not None:
            assert self.store.get_result(task_id, owner_id=owner) == task.result
        elif task.status.is_terminal:
            with pytest.raises(NoResult):
                self.store.get_result(task_id, owner_id=owner)
        else:
            with pytest.raises(NotReady):
                self.store.get_result(task_id, owner_id=owner)

    @rule(actor=st.integers(0, 1), limit=st.integers(1, 4))
    def list_tasks(self, actor: int, limit: int) -> None:
        owner, other = self.owners[actor], self.owners[1 - actor]
        ids: list[str] = []
        cursor: str | None = None
        while True:
            page = self.store.list(owner_id=owner, cursor=cursor, limit=limit)
            for record in page.tasks:
                self.check_record(record, actor)
            ids.extend(record.task.task_id for record in page.tasks)
            cursor = page.next_cursor
            if cursor is None:
                break
            with pytest.raises(InvalidArgument, match="does not belong"):
                self.store.list(owner_id=other, cursor=cursor, limit=limit)
        mine = {task_id for task_id, task in self.tasks.items() if task.owner == actor}
        assert len(ids) == len(set(ids)) and set(ids) == mine

    @invariant()
    def versions_change_only_by_their_owners_actions(self) -> None:
        for task_id, task in self.tasks.items():
            self.check_record(self.store.get(task_id, owner_id=self.owners[task.owner]), task.owner)


def test_no_operation_of_one_owner_reaches_a_task_of_another(
    sync_make_store: SyncStoreFactory,
) -> None:
    store = sync_make_store()

    class OnThisStore(OwnerIsolation):
        def __init__(self) -> None:
            super().__init__(store)

    run_state_machine_as_test(
        OnThisStore,
        settings=settings(
            max_examples=30,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
