"""Properties: variable merging equals a plain dict, and record encoding is canonical."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

import taskstore_redis
from taskstore_redis import StoreConfig, Task, TaskRecord, TaskStatus
from taskstore_redis._core.model import (
    FORMAT,
    datetime_from_ms,
    decode_record,
    encode_core,
    encode_json,
    encode_variable_changes,
    ms_from_datetime,
    timestamp_from_ms,
    variables_size,
)
from taskstore_redis.backend import VersionedRecord

OWNER = "alice"
DEPTH = 3

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def json_values(depth: int = DEPTH) -> st.SearchStrategy[Any]:
    """Plain JSON values nested at most ``depth`` containers deep."""
    if depth == 0:
        return scalars
    children = json_values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    )


def canonical(value: Any) -> str:
    """A type-strict rendering: ``1``, ``1.0`` and ``True`` differ, key order does not."""
    return json.dumps(value, sort_keys=True)


# --- set_variables is a dict merge ----------------------------------------------------------

variable_updates = st.lists(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "é", ""]) | st.text(max_size=6),
        json_values(),
        max_size=4,
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(updates=variable_updates)
def test_a_sequence_of_set_variables_equals_merging_plain_dicts(
    updates: list[dict[str, Any]],
) -> None:
    config = StoreConfig(max_variable_depth=DEPTH + 2)
    with taskstore_redis.GenericTaskStore(taskstore_redis.InMemoryBackend(), config) as store:
        task_id = store.create("tools/call", owner_id=OWNER).task.task_id
        model: dict[str, Any] = {}
        for update in updates:
            returned = store.set_variables(task_id, update, owner_id=OWNER)
            for key, value in update.items():
                if value is None:
                    model.pop(key, None)
                else:
                    model[key] = value
            assert canonical(returned.variables) == canonical(model)
        stored = store.get(task_id, owner_id=OWNER)
        assert stored.variables == model
        assert canonical(stored.variables) == canonical(model)
        assert stored.version == 1 + len(updates)


# --- encode_core / decode_record ------------------------------------------------------------

epoch_ms = st.integers(min_value=0, max_value=253_402_300_799_999 - 2**40)  # before the year 9999


stored_values = json_values().filter(lambda value: value is not None)  # None deletes a key


@st.composite
def records(draw: st.DrawFn) -> tuple[TaskRecord, int]:
    """A consistent record (its expiry is its creation plus its TTL) and its creation ms."""
    created = draw(epoch_ms)
    updated = created + draw(st.integers(min_value=0, max_value=2**32))
    ttl = draw(st.none() | st.integers(min_value=0, max_value=2**40))
    record = TaskRecord(
        task=Task(
            task_id=draw(st.uuids().map(str) | st.text(max_size=12)),
            status=draw(st.sampled_from(list(TaskStatus))),
            status_message=draw(st.none() | st.text(max_size=20)),
            created_at=timestamp_from_ms(created),
            last_updated_at=timestamp_from_ms(updated),
            ttl=ttl,
            poll_interval=draw(st.integers(min_value=0, max_value=2**31)),
        ),
        owner_id=draw(st.text(max_size=12)),
        variables=draw(st.dictionaries(st.text(max_size=8), stored_values, max_size=5)),
        result=draw(json_values()),
        request_method=draw(st.text(max_size=12)),
        expires_at=None if ttl is None else datetime_from_ms(created + ttl),
        version=draw(st.integers(min_value=1, max_value=2**63 - 1)),
    )
    return record, created


def stored_of(record: TaskRecord, created: int) -> VersionedRecord:
    """What a backend gives back for ``record``: its core, and its variables joined."""
    sets, _ = encode_variable_changes(record.variables)
    members = [name + b":" + value for name, value in reversed(sets)]  # any order
    return VersionedRecord(
        version=record.version,
        core_version=1,
        data=encode_core(record, created),
        variables=b"{" + b",".join(members) + b"}",
        updated_at_ms=ms_from_datetime(
            datetime.fromisoformat(record.task.last_updated_at.replace("Z", "+00:00"))
        ),
        format=FORMAT,
    )


def reordered(value: Any) -> Any:
    """The same JSON value with every dict built in reverse insertion order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


@settings(max_examples=200, deadline=None)
@given(drawn=records())
def test_decoding_an_encoded_record_gives_it_back(drawn: tuple[TaskRecord, int]) -> None:
    record, created = drawn
    decoded = decode_record(stored_of(record, created), record.owner_id, record.task.task_id)
    assert decoded.record == record
    assert decoded.created_at_ms == created
    assert canonical(decoded.record.variables) == canonical(record.variables)
    assert canonical(decoded.record.result) == canonical(record.result)
    assert decoded.record.expires_at == record.expires_at


@settings(max_examples=200, deadline=None)
@given(drawn=records())
def test_dict_insertion_order_does_not_change_the_encoding(drawn: tuple[TaskRecord, int]) -> None:
    record, created = drawn
    twin = msgspec.structs.replace(
        record, variables=reordered(record.variables), result=reordered(record.result)
    )
    assert twin == record
    assert encode_core(twin, created) == encode_core(record, created)
    assert sorted(encode_variable_changes(twin.variables)[0]) == sorted(
        encode_variable_changes(record.variables)[0]
    )


@settings(max_examples=200, deadline=None)
@given(drawn=records())
def test_a_decoded_record_encodes_to_the_same_bytes(drawn: tuple[TaskRecord, int]) -> None:
    record, created = drawn
    data = encode_core(record, created)
    assert (
        encode_core(
            decode_record(stored_of(record, created), record.owner_id, record.task.task_id).record,
            created,
        )
        == data
    )


@settings(max_examples=200, deadline=None)
@given(variables=st.dictionaries(st.text(max_size=8), stored_values, max_size=6))
def test_the_variables_size_follows_from_the_member_lengths(variables: dict[str, Any]) -> None:
    sets, _ = encode_variable_changes(variables)
    total = sum(len(name) + 1 + len(value) for name, value in sets)
    assert variables_size(len(sets), total) == len(encode_json(variables))


@settings(max_examples=100, deadline=None)
@given(drawn=records())
def test_the_version_and_variables_are_not_part_of_the_core(
    drawn: tuple[TaskRecord, int],
) -> None:
    record, created = drawn
    other = msgspec.structs.replace(record, version=record.version + 1, variables={"x": 1})
    assert encode_core(other, created) == encode_core(record, created)
    assert not encode_core(record, created).endswith(b",null]")  # trailing nulls left out


def test_an_encoded_core_is_plain_json_with_sorted_object_keys() -> None:
    record = TaskRecord(
        task=Task(
            task_id="t",
            status=TaskStatus.COMPLETED,
            created_at="2025-01-01T00:00:00.000Z",
            last_updated_at="2025-01-01T00:00:00.000Z",
            ttl=None,
            poll_interval=500,
        ),
        owner_id="o",
        variables={},
        result={"b": 1, "a": {"z": 1, "y": 2}},
        request_method="m",
        expires_at=None,
        version=1,
    )
    text = encode_core(record, 1_735_689_600_000).decode()
    assert json.loads(text) == [
        "completed",
        1_735_689_600_000,
        500,
        "m",
        None,
        None,
        {"a": {"y": 2, "z": 1}, "b": 1},
    ]
    assert text.index('"a"') < text.index('"b"')
    assert text.index('"y"') < text.index('"z"')
