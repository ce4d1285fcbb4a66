"""Watches: a waiter's subscription to the changes of one task, for the backends' ``watch``."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Protocol

from .._redis.pubsub import AsyncHub
from .._runtime.fanout import Fanout
from .._runtime.wake import AsyncWaker, async_waker


class HubOwner(Protocol):
    """What a ChannelWatch subscribes through: the backend, which owns its hub."""

    async def watch_hub(self) -> AsyncHub:
        """The backend's hub for this process (and event loop), built on first use."""
        ...


class FanoutWatch:
    """A watch on an in-process fan-out (the in-memory backend): in place as soon as entered."""

    def __init__(self, fanout: Fanout, channel: Hashable) -> None:
        """Watch ``channel`` of ``fanout``."""
        self._fanout = fanout
        self._channel = channel
        self._waker: AsyncWaker | None = None

    async def __aenter__(self) -> FanoutWatch:
        """Register this waiter."""
        self._waker = async_waker()
        self._fanout.add(self._channel, self._waker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unregister this waiter."""
        if self._waker is not None:
            self._fanout.remove(self._channel, self._waker)

    async def wait(self, timeout: float | None) -> None:
        """Return after a change notice (at once if one came since the last return) or timeout."""
        assert self._waker is not None, "wait() outside of the watch's context"
        await self._waker.wait(timeout)


class ChannelWatch:
    """A watch on a Redis shard channel, through the backend's hub (one connection per node)."""

    def __init__(self, owner: HubOwner, channel: str) -> None:
        """Watch ``channel`` through ``owner``'s hub."""
        self._owner = owner
        self._channel = channel
        self._hub: AsyncHub | None = None
        self._waker: AsyncWaker | None = None

    async def __aenter__(self) -> ChannelWatch:
        """Subscribe; return once the server confirmed the subscription."""
        hub = await self._owner.watch_hub()
        waker = async_waker()
        await hub.subscribe(self._channel, waker)
        self._hub, self._waker = hub, waker
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unsubscribe (the channel too, when this was its last waiter), without blocking."""
        if self._hub is not None and self._waker is not None:
            self._hub.unsubscribe(self._channel, self._waker)

    async def wait(self, timeout: float | None) -> None:
        """Return after a change notice (at once if one came since the last return) or timeout."""
        assert self._waker is not None, "wait() outside of the watch's context"
        await self._waker.wait(timeout)


class _ShardNotice:
    """A Pokeable that reports a notice on one shard of a queue."""

    __slots__ = ("_on_notice", "_shard")

    def __init__(self, on_notice: Callable[[int], None], shard: int) -> None:
        self._on_notice = on_notice
        self._shard = shard

    def poke(self) -> None:
        self._on_notice(self._shard)


class QueueFanoutWatch:
    """A queue's notices on an in-process fan-out (the in-memory backend: one shard)."""

    def __init__(self, fanout: Fanout, channel: Hashable, on_notice: Callable[[int], None]) -> None:
        """Report every notice of ``channel`` as shard 0."""
        self._fanout = fanout
        self._channel = channel
        self._notice = _ShardNotice(on_notice, 0)

    async def __aenter__(self) -> QueueFanoutWatch:
        """Register; in place at once."""
        self._fanout.add(self._channel, self._notice)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unregister."""
        self._fanout.remove(self._channel, self._notice)

    def live(self) -> bool:
        """Always: an in-process fan-out loses nothing."""
        return True


class QueueChannelWatch:
    """A queue's notices on its shards' Redis channels, through the backend's hub."""

    def __init__(
        self, owner: HubOwner, channels: list[str], on_notice: Callable[[int], None]
    ) -> None:
        """Watch ``channels`` (shard by shard) through ``owner``'s hub."""
        self._owner = owner
        self._channels = channels
        self._notices = [_ShardNotice(on_notice, shard) for shard in range(len(channels))]
        self._hub: AsyncHub | None = None

    async def __aenter__(self) -> QueueChannelWatch:
        """Subscribe every shard's channel; return once all are confirmed.

        Or, while a node cannot be reached (a restart, a failover), once the hub has
        tried it: the subscriptions are then confirmed when it answers again, and
        meanwhile :meth:`live` is False, so a claim keeps looking (see
        ``GenericTaskStore.claim``) rather than waiting here.
        """
        hub = await self._owner.watch_hub()
        self._hub = hub
        try:
            await hub.subscribe_many(
                list(zip(self._channels, self._notices, strict=True)), confirm=False
            )
        except BaseException:
            self._hub = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unsubscribe, without blocking."""
        hub, self._hub = self._hub, None
        if hub is not None:
            for channel, notice in zip(self._channels, self._notices, strict=True):
                hub.unsubscribe(channel, notice)

    def live(self) -> bool:
        """Whether every channel's subscription is confirmed now."""
        hub = self._hub
        return hub is not None and all(hub.confirmed_now(channel) for channel in self._channels)
