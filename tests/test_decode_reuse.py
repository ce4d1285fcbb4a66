"""Decoding a task from an earlier decoding of it gives what a fresh decoding gives."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from taskstore_redis._core.errors import StorageCorrupted, UnsupportedFormat
from taskstore_redis._core.model import FORMAT, decode_page, decode_record
from taskstore_redis.backend import VersionedRecord

_CORES = [
    b'["working",1764660000123,5000,"tools/call",3600000]',
    b'["input_required",1764660000123,5000,"tools/call",3600000,"waiting"]',
    b'["completed",1764660000123,5000,"tools/call",null,"done",{"answer":42}]',
]
_VARIABLES = [b"{}", b'{"progress":1}', b'{"a":[1,2],"progress":2}']
_UPDATED = [None, 1764660001123, 1764660002999]


def _stored(data: bytes, variables: bytes, updated: int | None, version: int) -> VersionedRecord:
    return VersionedRecord(
        version=version,
        core_version=version,
        data=data,
        variables=variables,
        updated_at_ms=updated,
        format=FORMAT,
    )


@pytest.mark.parametrize(("before", "after"), list(itertools.product(range(3), repeat=2)))
def test_reusing_an_earlier_decoding_changes_nothing(before: int, after: int) -> None:
    for old_vars, new_vars, old_upd, new_upd in itertools.product(
        _VARIABLES, _VARIABLES, _UPDATED, _UPDATED
    ):
        known = decode_record(_stored(_CORES[before], old_vars, old_upd, 3), "o", "t")
        stored = _stored(_CORES[after], new_vars, new_upd, 4)
        fresh = decode_record(stored, "o", "t")
        reused = decode_record(stored, "o", "t", known)
        assert reused == fresh
        assert reused.record == fresh.record


def test_a_corrupt_record_is_refused_even_after_an_earlier_decoding() -> None:
    known = decode_record(_stored(_CORES[0], b"{}", None, 1), "o", "t")
    with pytest.raises(StorageCorrupted):
        decode_record(_stored(_CORES[0], b'{"a":', None, 2), "o", "t", known)
    with pytest.raises(StorageCorrupted):
        decode_record(_stored(b'["working"]', b"{}", None, 2), "o", "t", known)


def _page() -> list[VersionedRecord]:
    return [
        msgspec.structs.replace(
            _stored(core, variables, updated, 4), task_id=f"t{n}", core_version=n
        )
        for n, (core, variables, updated) in enumerate(
            itertools.product(_CORES, _VARIABLES, _UPDATED)
        )
    ]


def test_a_page_decoded_in_one_pass_is_what_decoding_each_task_gives() -> None:
    page = _page()
    known = [
        None if n % 3 == 0 else decode_record(page[(n + 4) % len(page)], "o", f"t{n}")
        for n in range(len(page))
    ]
    decoded = decode_page(page, "o", known)
    assert decoded == [
        decode_record(stored, "o", stored.task_id, earlier)
        for stored, earlier in zip(page, known, strict=True)
    ]
    assert [one.record.task.task_id for one in decoded] == [s.task_id for s in page]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"data": b'["working"]'}, StorageCorrupted),
        ({"data": b'["working",1,2,"m"],["working",1,2,"m"]'}, StorageCorrupted),
        ({"variables": b'{"a":'}, StorageCorrupted),
        ({"format": "3.0"}, UnsupportedFormat),
    ],
)
def test_a_page_with_one_bad_task_raises_what_decoding_that_task_raises(
    bad: dict[str, object], error: type[Exception]
) -> None:
    page = _page()
    page[5] = msgspec.structs.replace(page[5], **bad)
    with pytest.raises(error):
        decode_page(page, "o", [None] * len(page))
