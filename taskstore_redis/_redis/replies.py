"""Decoding the replies of Redis into the backend's values, shared by the async and sync backends.

A task comes back either from ``HGETALL`` (every field) or from a script's
``record()`` (the core fields, and the variables already joined as
``"k1":v1,"k2":v2``); both become one :class:`VersionedRecord`.
"""

from __future__ import annotations

from typing import Any

from .._core.backend_types import VersionedRecord
from .keys import decode_task_id
from .scripts import Script


def created(reply: Any) -> bool:
    """Whether a create script's reply says it wrote."""
    return int(reply) == 1


def wrote(reply: Any) -> bool:
    """Whether a compare-and-set or merge script's reply says it wrote."""
    return int(reply[0]) == 1


def evalsha(script: Script, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    """The EVALSHA command of a script call."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def as_str(value: bytes | str) -> str:
    """A reply's text as str."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _record(
    flat: list[Any], joined: bytes | str | None = None, task_id: str = ""
) -> VersionedRecord | None:
    """Assemble a stored task from its hash fields, a flat list of names and values.

    None if it has none. Fields whose name starts with a double quote are
    variables (the name is the key's JSON, the value the value's JSON), unless a
    script has already joined them (``joined``, as ``key:value,key:value``);
    unknown fields are ignored. One pass over the fields.
    """
    if len(flat) % 2:
        raise ValueError("a hash reply has an odd number of elements")
    version = core_version = updated = None
    data: bytes | None = None
    fmt = ""
    members: list[bytes] = []
    if joined:
        members.append(_as_bytes(joined))
    for at in range(0, len(flat), 2):
        name = flat[at]
        value = flat[at + 1]
        if type(name) is not bytes:
            name = _as_bytes(name)
        if type(value) is not bytes:
            value = _as_bytes(value)
        if name == b"d":
            data = value
        elif name[:1] == b'"':
            members.append(name + b":" + value)
        elif name == b"v":
            version = int(value)
        elif name == b"k":
            core_version = int(value)
        elif name == b"u":
            updated = int(value)
        elif name == b"f":
            fmt = value.decode("ascii", "replace")
    if version is None or data is None:
        return None
    return VersionedRecord(
        version=version,
        core_version=0 if core_version is None else core_version,
        data=data,
        variables=b"{" + b",".join(members) + b"}" if members else b"{}",
        updated_at_ms=updated,
        format=fmt,
        task_id=task_id,
    )


def record_of_script(
    core: list[Any], joined: bytes | str, task_id: bytes | str = ""
) -> VersionedRecord | None:
    """A task as the scripts' ``record()`` returns it.

    Its core fields, its variables joined, and in a list page its id as its key
    spells it.
    """
    return _record(core, joined, decode_task_id(as_str(task_id)) if task_id else "")


def record_of_hash(reply: Any) -> VersionedRecord | None:
    """A task from an HGETALL reply (a dict, or a flat list on RESP2 without callbacks)."""
    if isinstance(reply, dict):
        return _record([part for pair in reply.items() for part in pair])
    return _record(reply)
