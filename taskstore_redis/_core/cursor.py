"""Opaque list cursors: a position in one owner's index, bound to that owner."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib

import msgspec

from .backend_types import ListPosition
from .errors import InvalidArgument

_VERSION = 1


class _Cursor(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    version: int
    owner: str
    created_at_ms: int
    task_id: str


_decoder = msgspec.json.Decoder(_Cursor)
_encoder = msgspec.json.Encoder()


@functools.lru_cache(maxsize=1024)
def _owner_fingerprint(owner_id: str) -> str:
    return hashlib.sha256(owner_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def encode_cursor(owner_id: str, position: ListPosition) -> str:
    """Wrap a list position of ``owner_id`` into an opaque cursor string."""
    raw = _encoder.encode(
        _Cursor(
            version=_VERSION,
            owner=_owner_fingerprint(owner_id),
            created_at_ms=position.created_at_ms,
            task_id=position.task_id,
        )
    )
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(owner_id: str, cursor: object) -> ListPosition:
    """Unwrap a cursor; raise InvalidArgument if it is malformed or of another owner."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise InvalidArgument("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = _decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidArgument("malformed cursor") from None
    if decoded.version != _VERSION or decoded.owner != _owner_fingerprint(owner_id):
        raise InvalidArgument("cursor does not belong to this listing")
    return ListPosition(decoded.created_at_ms, decoded.task_id)
