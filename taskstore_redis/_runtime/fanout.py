"""A thread-safe fan-out of change notices: the waiters of each channel, poked together."""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Protocol


class Pokeable(Protocol):
    """Anything that can be told "look again" from any thread."""

    def poke(self) -> None:
        """Wake its waiter."""
        ...


class Fanout:
    """Waiters per channel; ``notify(channel)`` pokes each of them. Safe across threads."""

    def __init__(self) -> None:
        """Start with no waiters."""
        self._lock = threading.Lock()
        self._waiters: dict[Hashable, set[Pokeable]] = {}

    def add(self, channel: Hashable, waiter: Pokeable) -> bool:
        """Register ``waiter`` on ``channel``; return whether it is the channel's first."""
        with self._lock:
            waiters = self._waiters.setdefault(channel, set())
            waiters.add(waiter)
            return len(waiters) == 1

    def remove(self, channel: Hashable, waiter: Pokeable) -> bool:
        """Unregister ``waiter`` (if registered); return whether the channel has none left."""
        with self._lock:
            waiters = self._waiters.get(channel)
            if waiters is None:
                return False
            waiters.discard(waiter)
            if waiters:
                return False
            del self._waiters[channel]
            return True

    def has(self, channel: Hashable) -> bool:
        """Whether ``channel`` has waiters now."""
        with self._lock:
            return channel in self._waiters

    def notify(self, channel: Hashable) -> None:
        """Poke every waiter of ``channel``."""
        with self._lock:
            waiters = list(self._waiters.get(channel, ()))
        for waiter in waiters:
            waiter.poke()

    def notify_all(self) -> None:
        """Poke every waiter of every channel."""
        with self._lock:
            waiters = [waiter for group in self._waiters.values() for waiter in group]
        for waiter in waiters:
            waiter.poke()

    def registrations(self) -> int:
        """How many (channel, waiter) registrations there are now."""
        with self._lock:
            return sum(len(group) for group in self._waiters.values())

    def channels(self) -> list[Hashable]:
        """The channels that have waiters now."""
        with self._lock:
            return list(self._waiters)
