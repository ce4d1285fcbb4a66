"""Properties: variable merging equals a plain dict, and record encoding is canonical."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

import taskstore_redis
from taskstore_redis import StoreConfig, Task, TaskRecord, TaskStatus, VersionedRecord
from taskstore_redis._core.model import datetime_from_ms, decode_record, encode_record

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
        task_id = store.create(OWNER, "tools/call").task.task_id
        model: dict[str, Any] = {}
        for update in updates:
            returned = store.set_variables(task_id, OWNER, update)
            for key, value in update.items():
                if value is None:
                    model.pop(key, None)
                else:
                    model[key] = value
            assert canonical(returned.variables) == canonical(model)
        stored = store.get(task_id, OWNER)
        assert stored.variables == model
        assert canonical(stored.variables) == canonical(model)
        assert stored.version == 1 + len(updates)


# --- encode_record / decode_record ----------------------------------------------------------

epoch_ms = st.integers(min_value=0, max_value=253_402_300_799_999)  # up to the year 9999
stamps = epoch_ms.map(lambda ms: datetime_from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")

tasks = st.builds(
    Task,
    task_id=st.uuids().map(str) | st.text(max_size=12),
    status=st.sampled_from(list(TaskStatus)),
    status_message=st.none() | st.text(max_size=20),
    created_at=stamps,
    last_updated_at=stamps,
    ttl=st.none() | st.integers(min_value=0, max_value=2**53),
    poll_interval=st.integers(min_value=0, max_value=2**31),
)

records = st.builds(
    TaskRecord,
    task=tasks,
    owner_id=st.text(max_size=12),
    variables=st.dictionaries(st.text(max_size=8), json_values(), max_size=5),
    result=json_values(),
    request_method=st.text(max_size=12),
    expires_at=st.none() | epoch_ms.map(datetime_from_ms),
    version=st.integers(min_value=1, max_value=2**63 - 1),
)


def reordered(value: Any) -> Any:
    """The same JSON value with every dict built in reverse insertion order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def round_trip(record: TaskRecord) -> TaskRecord:
    return decode_record(VersionedRecord(record.version, encode_record(record)))


@settings(max_examples=200, deadline=None)
@given(record=records)
def test_decoding_an_encoded_record_gives_it_back(record: TaskRecord) -> None:
    decoded = round_trip(record)
    assert decoded == record
    assert canonical(decoded.variables) == canonical(record.variables)
    assert canonical(decoded.result) == canonical(record.result)
    assert decoded.expires_at == record.expires_at


@settings(max_examples=200, deadline=None)
@given(record=records)
def test_dict_insertion_order_does_not_change_the_encoding(record: TaskRecord) -> None:
    twin = msgspec.structs.replace(
        record, variables=reordered(record.variables), result=reordered(record.result)
    )
    assert twin == record
    assert encode_record(twin) == encode_record(record)


@settings(max_examples=200, deadline=None)
@given(record=records)
def test_a_decoded_record_encodes_to_the_same_bytes(record: TaskRecord) -> None:
    data = encode_record(record)
    assert encode_record(round_trip(record)) == data
    assert encode_record(record) == data


@settings(max_examples=100, deadline=None)
@given(record=records)
def test_the_version_is_not_part_of_the_encoding(record: TaskRecord) -> None:
    other = msgspec.structs.replace(record, version=record.version + 1)
    assert encode_record(other) == encode_record(record)
    assert "version" not in json.loads(encode_record(record))


def test_an_encoded_record_is_plain_json_with_sorted_object_keys() -> None:
    record = TaskRecord(
        task=Task(
            task_id="t",
            status=TaskStatus.WORKING,
            created_at="2025-01-01T00:00:00.000Z",
            last_updated_at="2025-01-01T00:00:00.000Z",
            ttl=None,
            poll_interval=500,
        ),
        owner_id="o",
        variables={"b": 1, "a": {"z": 1, "y": 2}},
        result=None,
        request_method="m",
        expires_at=datetime_from_ms(1_735_689_600_000),
        version=1,
    )
    text = encode_record(record).decode()
    assert json.loads(text)["variables"] == {"a": {"y": 2, "z": 1}, "b": 1}
    assert text.index('"a"') < text.index('"b"')
    assert text.index('"y"') < text.index('"z"')
