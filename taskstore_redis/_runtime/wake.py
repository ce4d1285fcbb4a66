"""Wakers: how a waiter is told "look again", the one place where async and sync waiting differ.

A waker is poked from any thread (a notifier, the subscription listener) and
waited on by one waiter. Pokes are not counted: any number of pokes before a
``wait`` make it return once. A waiter therefore reads the state *after* each
return of ``wait``, so a poke is never lost: one that lands before the read is
covered by the read, one after it makes the next ``wait`` return.

The async code calls :func:`async_waker` and scripts/unasync.py turns that into
:func:`sync_waker` in the generated blocking code: that name pair is the seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from typing import Protocol


class Waker(Protocol):
    """A one-waiter, thread-safe wake-up flag."""

    def poke(self) -> None:
        """Make the current or next ``wait`` return; safe from any thread."""
        ...


class AsyncWaker:
    """A waker for a coroutine, bound to the event loop running when it was made."""

    __slots__ = ("_event", "_loop", "_thread")

    def __init__(self) -> None:
        """Bind to the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._event = asyncio.Event()

    def poke(self) -> None:
        """Set the flag, through the loop when called from another thread."""
        if threading.get_ident() == self._thread:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float | None) -> None:
        """Return once poked (at once if poked since the last return) or after ``timeout`` s."""
        if not self._event.is_set():
            limit = _finite(timeout)
            # a timer that sets the flag: cheaper than a timeout scope, and harmless since a
            # return only means "look again"
            timer = None if limit is None else self._loop.call_later(limit, self._event.set)
            try:
                await self._event.wait()
            finally:
                if timer is not None:
                    timer.cancel()
        self._event.clear()


class SyncWaker:
    """A waker for a blocked thread."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        """Start unpoked."""
        self._event = threading.Event()

    def poke(self) -> None:
        """Set the flag."""
        self._event.set()

    def wait(self, timeout: float | None) -> None:
        """Block until poked (at once if poked since the last return) or for ``timeout`` s."""
        self._event.wait(_finite(timeout))
        self._event.clear()


LONGEST_WAIT = 86_400.0
"""Seconds one ``wait`` blocks at most, however long its timeout: ``threading`` refuses
timeouts above ``threading.TIMEOUT_MAX`` (``OverflowError``), and a return only means
"look again", so a waiter whose time is not up simply waits again."""


def _finite(timeout: float | None) -> float | None:
    if timeout is None or math.isinf(timeout):
        return None
    return min(LONGEST_WAIT, max(0.0, timeout))


def async_waker() -> AsyncWaker:
    """A waker for the running event loop."""
    return AsyncWaker()


def sync_waker() -> SyncWaker:
    """A waker for the calling thread."""
    return SyncWaker()
