"""Cleanup that a cancellation must not cut short, the one place where async and sync differ.

A client closed in a ``finally`` while its task is being cancelled must still close:
in anyio every ``await`` inside a cancelled scope is cancelled at once, so the close
would be skipped and its connections left for the garbage collector. The async code
wraps such a close in :func:`async_shielded`; scripts/unasync.py turns that into
:func:`sync_shielded` in the generated blocking code, where nothing is cancelled.
"""

from __future__ import annotations

import contextlib

import anyio


def async_shielded() -> contextlib.AbstractContextManager[object]:
    """A scope that a cancellation from outside does not reach (anyio's shielded scope)."""
    return anyio.CancelScope(shield=True)


def sync_shielded() -> contextlib.AbstractContextManager[object]:
    """Blocking code is not cancelled: nothing to shield."""
    return contextlib.nullcontext()
