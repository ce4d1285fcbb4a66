"""Whose tasks a call may see: a fixed owner id, or one derived for each request."""

from __future__ import annotations

from collections.abc import Callable

OwnerSource = str | Callable[[], str]
"""An owner id, or a function that returns the owner of the request being served."""


def resolve_owner(owner: OwnerSource) -> str:
    """The owner id for the call being made now."""
    return owner if isinstance(owner, str) else owner()
