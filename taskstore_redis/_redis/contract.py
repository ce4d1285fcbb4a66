"""The contract between the Python code and the Lua scripts: reply codes.

Every script that replies with a code takes it from one table,
``lua/includes/codes.lua``; :class:`Code` mirrors it (``tests/test_lua_contract.py``
holds the two together). A code means the same in every script.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """A script's reply code: the ``Code`` table of ``lua/includes/codes.lua``."""

    OK = 1
    """Applied (or, for a read, found)."""
    NOT_FOUND = 0
    """No such task."""
    CONFLICT = -1
    """The task is not as the caller read it (core version, format or record)."""
    LEASE_REFUSED = -2
    """The lease named does not hold; the reply says why."""
    TOO_LARGE = -3
    """The variables would outgrow their limit; the reply gives the size."""
    OTHER_FORMAT = -4
    """Stored in another major format; the reply gives it."""
    EXPIRED = -5
    """The task has expired."""
    EXISTS = -6
    """A task with this key exists already."""
    OVER_QUOTA = -7
    """The owner has as many live tasks as the quota allows."""
