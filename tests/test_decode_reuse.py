"""Decoding a task from an earlier decoding of it gives what a fresh decoding gives."""

from __future__ import annotations

import itertools

import pytest

from taskstore_redis._core.backend_types import VersionedRecord
from taskstore_redis._core.errors import StorageCorrupted
from taskstore_redis._core.model import FORMAT, decode_record

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
