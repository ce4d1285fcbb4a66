"""Change notices from Redis: one sharded pub/sub connection per node, shared by all waiters.

The write scripts ``SPUBLISH`` on a channel per task, in the task's slot (see
:mod:`taskstore_redis._redis.keys`). A :class:`Subscriber` keeps one connection
per node it needs (one on standalone Redis, at most one per primary on a
cluster) and fans each message out to the wakers waiting on that channel. A
waker never sees the message's content: a message only says "read the task
again". A :class:`Receiver` (the MCP event bus's) gets the content too.

Guarantees:

* ``subscribe`` returns only after the server confirmed the subscription, so a
  waiter that reads afterwards misses no write that follows its read.
* When a connection is lost (killed, server restart, failover) or the server
  drops a channel (its slot moved), the channels are subscribed again, on the
  node that now owns their slot, and every waiter of a channel that had been
  confirmed before is poked once the new subscription is confirmed: it reads
  again and returns if what it waits for happened meanwhile.
* A silent connection is pinged after ``health_interval`` seconds; without an
  answer within as long again it counts as lost. No read timeout cuts a wait.

The subscriber runs on one asyncio event loop. :class:`AsyncHub` uses it on the
caller's loop; :class:`SyncHub` runs it on a loop of its own, in one daemon
thread per hub, so that any number of threads share one connection per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.crc
import redis.exceptions

from .._core.errors import StoreUnavailable
from .._core.log import PUBSUB
from .._runtime.fanout import Fanout, Pokeable

_T = TypeVar("_T")
_Address = tuple[str, int] | None
"""A cluster node's (host, port), or None for the one server of standalone Redis."""

CONFIRM_TIMEOUT = 10.0
"""Seconds a new subscription may take to be confirmed before the waiter gets StoreUnavailable,
when the client's socket timeouts do not say (see :func:`confirm_timeout_of`)."""
CONFIRM_TIMEOUT_MIN = 1.0
"""Seconds a subscription may always take to be confirmed, however short the socket timeouts."""
HEALTH_INTERVAL = 10.0
"""Seconds of silence on a subscription connection before it is pinged."""
_BACKOFF_FIRST = 0.02
_BACKOFF_MAX = 1.0
_NOT_PASSED = ("retry", "retry_on_error", "retry_on_timeout", "redis_connect_func", "cache")


@dataclass
class NodeSource:
    """How to open a subscription connection to a node: connection class and arguments."""

    cluster: bool
    connection_class: type[redis.asyncio.connection.AbstractConnection]
    kwargs: dict[str, Any]
    seeds: list[tuple[str, int]] = field(default_factory=list)


def node_source(client: Any) -> NodeSource:
    """The connection settings of a redis-py client (sync or async, standalone or cluster)."""
    if isinstance(client, redis.RedisCluster | redis.asyncio.RedisCluster):
        manager = client.nodes_manager
        kwargs = dict(manager.connection_kwargs)
        nodes = [*manager.startup_nodes.values(), *client.get_nodes()]
        seeds = list(dict.fromkeys((node.host, int(node.port)) for node in nodes))
        given = kwargs.pop("connection_class", None)
        return NodeSource(
            cluster=True,
            connection_class=_async_class(given),
            kwargs=_accepted(given, kwargs),
            seeds=seeds,
        )
    pool = client.connection_pool
    return NodeSource(
        cluster=False,
        connection_class=_async_class(pool.connection_class),
        kwargs=_accepted(pool.connection_class, dict(pool.connection_kwargs)),
    )


def confirm_timeout_of(kwargs: dict[str, Any]) -> float:
    """How long a subscription may take to be confirmed: the socket timeouts, connect and read.

    No call waits much longer than the client's socket timeouts; without both of them
    set, :data:`CONFIRM_TIMEOUT`. At least :data:`CONFIRM_TIMEOUT_MIN`, so a busy
    machine does not fail a subscription that short socket timeouts would allow, and
    at most six times :data:`CONFIRM_TIMEOUT`.
    """
    connect, read = kwargs.get("socket_connect_timeout"), kwargs.get("socket_timeout")
    if not isinstance(connect, int | float) or not isinstance(read, int | float):
        return CONFIRM_TIMEOUT
    return min(CONFIRM_TIMEOUT * 6, max(CONFIRM_TIMEOUT_MIN, float(connect) + float(read)))


def _async_class(given: Any) -> type[redis.asyncio.connection.AbstractConnection]:
    name = getattr(given, "__name__", "Connection")
    found = getattr(redis.asyncio.connection, name, None)
    if isinstance(found, type) and issubclass(found, redis.asyncio.connection.AbstractConnection):
        return found
    return redis.asyncio.connection.Connection


def _accepted(given: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments the async connection class takes, less retries and hooks made for sync."""
    cls = _async_class(given)
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return {k: v for k, v in kwargs.items() if k in names and k not in _NOT_PASSED}


class Receiver(Protocol):
    """A waiter that also takes the content of each message (see ``subscribe_receiver``)."""

    def poke(self) -> None:
        """A message came, or the channel was confirmed again after a loss."""
        ...

    def receive(self, message: bytes | str) -> None:
        """A message came on the channel (after :meth:`poke`); must not raise."""
        ...


class _Channel:
    __slots__ = ("confirmed", "link", "unconfirmed_waiters", "was_confirmed")

    def __init__(self) -> None:
        self.confirmed = asyncio.Event()
        self.was_confirmed = False
        self.unconfirmed_waiters = False
        """Whether a subscribe returned before the confirmation (``confirm=False``)."""
        self.link: _Link | None = None


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


class _Link:
    """One node's subscription connection and the channels it should carry."""

    def __init__(self, subscriber: Subscriber, address: _Address) -> None:
        self.subscriber = subscriber
        self.address = address
        self.channels: set[str] = set()
        self.connected = False
        self.healthy = False
        """Whether the server confirmed a subscription on the current connection."""
        self.broken = False
        """Whether the connection was lost after it had worked, and is not back yet."""
        self.unreachable = False
        """Whether the last attempt to connect failed (no connection now)."""
        self._outbox: list[tuple[str, ...]] = []
        self._kick = asyncio.Event()
        self._wanted = asyncio.Event()
        self._unsubscribing: dict[str, int] = {}
        self.task = asyncio.get_running_loop().create_task(self._run())

    @property
    def name(self) -> str:
        """The node, as logs name it: ``host:port``."""
        host, port = self.address or (
            self.subscriber.source.kwargs.get("path") or self.subscriber.source.kwargs.get("host"),
            self.subscriber.source.kwargs.get("port"),
        )
        return f"{host}:{port}" if port else str(host)

    def add(self, channel: str) -> None:
        self.channels.add(channel)
        if self.connected:
            self._send("SSUBSCRIBE", channel)
        self._wanted.set()

    def drop(self, channel: str, *, unsubscribe: bool = True) -> None:
        self.channels.discard(channel)
        if self.connected and unsubscribe:
            self._unsubscribing[channel] = self._unsubscribing.get(channel, 0) + 1
            self._send("SUNSUBSCRIBE", channel)

    def _send(self, *command: str) -> None:
        self._outbox.append(command)
        self._kick.set()

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        subscriber = self.subscriber
        while not subscriber.closed:
            if not self.channels:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                connection = await subscriber.open(self.address)
            except Exception as exc:  # redis-py's, OS errors, or a client fault
                subscriber.last_error = exc
                self.unreachable = True
                subscriber.attempted()
                PUBSUB.debug("subscriptions to %s: cannot connect (%r)", self.name, exc)
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
                await subscriber.relocate(self)
                continue
            # no await between these lines: a channel added now is either in this batch
            # or sent by add() itself
            self.connected = True
            self.unreachable = False
            self._unsubscribing.clear()
            self._outbox = [("SSUBSCRIBE", channel) for channel in self.channels]
            self._kick.set()
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._write(connection))
                    group.create_task(self._read(connection))
            except* Exception as group:  # the link outlives any failure of its connection
                subscriber.last_error = group.exceptions[0]
            finally:
                self.connected = False
                subscriber.lost(self)
                await connection.disconnect(nowait=True)
            if self.healthy:  # it worked for a while: reconnect at once
                backoff = _BACKOFF_FIRST
                self.broken = True
                PUBSUB.warning(
                    "subscription connection to %s lost (%r); subscribing its %d channels again",
                    self.name,
                    subscriber.last_error,
                    len(self.channels),
                )
            else:  # refused from the start (an ACL, a MOVED): do not spin
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)
            self.healthy = False
            await subscriber.relocate(self)

    async def _write(self, connection: redis.asyncio.connection.AbstractConnection) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            batch, self._outbox = self._outbox, []
            if batch:
                packed = connection.pack_commands([list(command) for command in batch])
                await connection.send_packed_command(packed, check_health=False)

    async def _read(self, connection: redis.asyncio.connection.AbstractConnection) -> None:
        subscriber = self.subscriber
        pinged = False
        while True:
            reply = await connection.read_response(timeout=subscriber.health_interval)
            if reply is None:
                if pinged:
                    raise redis.exceptions.ConnectionError("no answer to PING on pub/sub")
                self._send("PING")
                pinged = True
                continue
            pinged = False
            kind = _text(reply[0]).lower()
            if kind == "smessage":
                subscriber.message(_text(reply[1]), reply[2])
            elif kind == "ssubscribe":
                subscriber.confirmed(self, _text(reply[1]))
            elif kind == "sunsubscribe":
                channel = _text(reply[1])
                pending = self._unsubscribing.get(channel, 0)
                if pending:
                    self._unsubscribing[channel] = pending - 1
                elif channel in self.channels:  # the server dropped it: its slot moved
                    PUBSUB.debug("%s dropped a subscription (its slot moved); moving it", self.name)
                    self.channels.discard(channel)
                    subscriber.dropped(channel)


class Subscriber:
    """Sharded pub/sub for many waiters over one connection per node (see the module doc)."""

    def __init__(
        self,
        source: NodeSource,
        *,
        confirm_timeout: float | None = None,
        health_interval: float = HEALTH_INTERVAL,
    ) -> None:
        """Connect lazily with ``source``'s settings; call from the loop it will run on.

        ``confirm_timeout`` (seconds) defaults to the source's socket timeouts, connect
        and read (:func:`confirm_timeout_of`).
        """
        self.source = source
        self.confirm_timeout = (
            confirm_timeout_of(source.kwargs) if confirm_timeout is None else confirm_timeout
        )
        self.health_interval = health_interval
        self.fanout = Fanout()
        self.closed = False
        self._channels: dict[str, _Channel] = {}
        self._links: dict[_Address, _Link] = {}
        self._slots: list[_Address] = []
        self._seeds: list[tuple[str, int]] = list(source.seeds)
        self._topology = asyncio.Lock()
        self._moving: set[asyncio.Task[None]] = set()
        self.last_error: BaseException | None = None
        """The last connection or server error, for the message of a failed subscription."""
        self._attempt = asyncio.Event()
        """Set (and replaced) each time a link fails to connect."""
        self._receivers: dict[str, set[Receiver]] = {}
        """The receivers of each channel that has any: they get the messages' content."""

    def registrations(self) -> int:
        """How many (channel, waker) registrations there are now."""
        return self.fanout.registrations()

    def channels(self) -> int:
        """How many channels are subscribed or wanted now."""
        return len(self._channels)

    def message(self, channel: str, content: bytes | str) -> None:
        """A message came on ``channel``: poke its waiters, then hand its receivers the content."""
        self.fanout.notify(channel)
        receivers = self._receivers.get(channel)
        if receivers:
            for receiver in list(receivers):
                try:
                    receiver.receive(content)
                except Exception:  # a receiver's fault must not cost the connection
                    PUBSUB.exception("a receiver of %s raised; the others still get it", channel)

    def attempted(self) -> None:
        """A link failed to connect: wake the subscribers that wait for an attempt."""
        attempt, self._attempt = self._attempt, asyncio.Event()
        attempt.set()

    async def subscribe(self, channel: str, waker: Pokeable, *, confirm: bool = True) -> None:
        """Register ``waker`` on ``channel``; return once the subscription is confirmed.

        Raises StoreUnavailable (and registers nothing) if no connection to the
        channel's node confirmed anything for ``confirm_timeout`` seconds. With
        ``confirm=False`` it also returns, registered, as soon as the channel's node
        cannot be connected to: the subscription is then confirmed later, once the
        node answers (:meth:`confirmed_now` says when), and meanwhile a caller must
        not count on notices.
        """
        if self.closed:
            raise StoreUnavailable("the RedisBackend is closed")
        self.fanout.add(channel, waker)
        try:
            state = self._channels.get(channel)
            if state is None:
                state = self._channels[channel] = _Channel()
                if self.source.cluster and not self._slots:
                    async with self._topology:
                        if not self._slots:
                            await self._refresh()
                if self._channels.get(channel) is state and state.link is None:
                    self._place(channel, state)
            while not state.confirmed.is_set():
                try:
                    async with asyncio.timeout(self.confirm_timeout):
                        if confirm:
                            await state.confirmed.wait()
                        elif await self._confirmed_or_unreachable(state):
                            state.unconfirmed_waiters = True
                            return
                except TimeoutError:
                    link = state.link
                    if link is not None and link.connected and link.healthy:
                        continue  # the server answers, only slowly (a busy process): wait on
                    # always a cause: the store tells a closed backend (none) from an outage
                    cause = self.last_error or TimeoutError("no confirmation from the server")
                    raise StoreUnavailable(
                        "the subscription to changes was not confirmed within "
                        f"{self.confirm_timeout} s (last error: {self.last_error!r})"
                    ) from cause
        except BaseException:
            self.unsubscribe(channel, waker)
            raise

    async def subscribe_receiver(
        self, channel: str, receiver: Receiver, *, confirm: bool = True
    ) -> None:
        """:meth:`subscribe` ``receiver``, which also gets the content of each message.

        Until :meth:`unsubscribe_receiver` it gets every message of ``channel`` that
        arrives while the subscription is confirmed, on this subscriber's loop; it is
        poked like a waker too (before each message, and once the channel is confirmed
        again after a loss: messages may have been missed meanwhile).
        """
        self._receivers.setdefault(channel, set()).add(receiver)
        try:
            await self.subscribe(channel, receiver, confirm=confirm)
        except BaseException:
            self._drop_receiver(channel, receiver)
            raise

    def unsubscribe_receiver(self, channel: str, receiver: Receiver) -> None:
        """Undo :meth:`subscribe_receiver`; never blocks."""
        self._drop_receiver(channel, receiver)
        self.unsubscribe(channel, receiver)

    def _drop_receiver(self, channel: str, receiver: Receiver) -> None:
        receivers = self._receivers.get(channel)
        if receivers is not None:
            receivers.discard(receiver)
            if not receivers:
                del self._receivers[channel]

    async def wait_confirmed(self, channel: str) -> None:
        """Return once ``channel``'s subscription is confirmed (at once if it is now).

        Raises StoreUnavailable if nothing subscribes ``channel``.
        """
        state = self._channels.get(channel)
        if state is None:
            raise StoreUnavailable(f"no subscription to {channel!r}")
        await state.confirmed.wait()

    async def _confirmed_or_unreachable(self, state: _Channel) -> bool:
        """Wait until ``state`` is confirmed (False) or its node cannot be reached (True)."""
        while not state.confirmed.is_set():
            link = state.link
            if link is not None and link.unreachable:
                return True
            attempt = asyncio.ensure_future(self._attempt.wait())
            confirmed = asyncio.ensure_future(state.confirmed.wait())
            try:
                await asyncio.wait((attempt, confirmed), return_when=asyncio.FIRST_COMPLETED)
            finally:
                attempt.cancel()
                confirmed.cancel()
        return False

    async def subscribe_many(
        self, pairs: list[tuple[str, Pokeable]], *, confirm: bool = True
    ) -> None:
        """Subscribe each (channel, waker) pair at once; return once all are confirmed.

        The subscriptions go out together (one batch per node). On any failure
        none stays registered and the first error is raised. ``confirm`` as in
        :meth:`subscribe`.
        """
        results = await asyncio.gather(
            *(self.subscribe(channel, waker, confirm=confirm) for channel, waker in pairs),
            return_exceptions=True,
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            for channel, waker in pairs:
                self.unsubscribe(channel, waker)
            raise errors[0]

    def confirmed_now(self, channel: str) -> bool:
        """Whether ``channel``'s subscription is confirmed at this moment (from any thread)."""
        state = self._channels.get(channel)
        return state is not None and state.confirmed.is_set()

    def unsubscribe(self, channel: str, waker: Pokeable) -> None:
        """Unregister ``waker``; unsubscribe the channel when it was its last. Never blocks."""
        if self.fanout.remove(channel, waker):
            self.release(channel)

    def release(self, channel: str) -> None:
        """Unsubscribe ``channel`` unless it has waiters again (on the loop's thread)."""
        if self.fanout.has(channel):
            return
        state = self._channels.pop(channel, None)
        if state is not None and state.link is not None:
            state.link.drop(channel)

    async def open(self, address: _Address) -> redis.asyncio.connection.AbstractConnection:
        """Open a subscription connection (RESP2, no health-check commands of redis-py's).

        No socket timeout: reads pass their own, and a send with one goes through
        ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation.
        """
        kwargs = {
            **self.source.kwargs,
            "health_check_interval": 0,
            "protocol": 2,
            "socket_timeout": None,
        }
        if address is not None:
            kwargs["host"], kwargs["port"] = address
        connection = self.source.connection_class(**kwargs)
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except BaseException:  # refused, timed out or cancelled: leave no socket behind
            await connection.disconnect(nowait=True)
            raise
        return connection

    def confirmed(self, link: _Link, channel: str) -> None:
        """The server confirmed ``channel`` on ``link``: release new waiters, poke old ones."""
        state = self._channels.get(channel)
        if state is None or state.link is not link or channel not in link.channels:
            return
        link.healthy = True
        if link.broken:
            link.broken = False
            PUBSUB.info("subscriptions to %s confirmed again", link.name)
        if state.was_confirmed or state.unconfirmed_waiters:
            # confirmed again after a loss, or at last for waiters that went on without
            # it: what changed meanwhile sent no notice, so look again
            self.fanout.notify(channel)
        state.was_confirmed = True
        state.unconfirmed_waiters = False
        state.confirmed.set()

    def lost(self, link: _Link) -> None:
        """``link``'s connection is gone: its channels wait for a new confirmation."""
        for channel in link.channels:
            state = self._channels.get(channel)
            if state is not None:
                state.confirmed.clear()

    def dropped(self, channel: str) -> None:
        """The server unsubscribed ``channel`` by itself: subscribe it where its slot is now."""
        state = self._channels.get(channel)
        if state is None:
            return
        state.confirmed.clear()
        state.link = None
        task = asyncio.get_running_loop().create_task(self._move(channel, state))
        self._moving.add(task)
        task.add_done_callback(self._moving.discard)

    async def _move(self, channel: str, state: _Channel) -> None:
        await asyncio.sleep(_BACKOFF_FIRST)
        async with self._topology:
            await self._refresh()
        if self._channels.get(channel) is state and state.link is None:
            self._place(channel, state)

    async def relocate(self, link: _Link) -> None:
        """After a failure on ``link``: learn the cluster's slots again and move its channels."""
        if not self.source.cluster or self.closed:
            return
        async with self._topology:
            await self._refresh()
        for channel in list(link.channels):
            state = self._channels.get(channel)
            target = self._address_of(channel)
            if state is not None and target != link.address:
                link.drop(channel, unsubscribe=False)
                state.link = None
                self._place(channel, state)

    def _place(self, channel: str, state: _Channel) -> None:
        address = self._address_of(channel)
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = _Link(self, address)
        state.link = link
        link.add(channel)

    def _address_of(self, channel: str) -> _Address:
        if not self.source.cluster:
            return None
        if not self._slots:
            return self._seeds[0]
        return self._slots[redis.crc.key_slot(channel.encode("utf-8", "surrogateescape"))]

    async def _refresh(self) -> None:
        """Read the slot map from the first node that answers; keep the old one if none does."""
        candidates = [*(a for a in self._links if a is not None), *self._seeds]
        for address in dict.fromkeys(candidates):
            try:
                connection = await self.open(address)
            except (redis.exceptions.RedisError, OSError):
                continue
            try:
                await connection.send_command("CLUSTER", "SLOTS", check_health=False)
                reply = await connection.read_response(timeout=self.confirm_timeout)
            except (redis.exceptions.RedisError, OSError):
                continue
            finally:
                await connection.disconnect(nowait=True)
            if not reply:
                continue
            slots: list[_Address] = [address] * 16384
            for start, end, primary, *_ in reply:
                host = _text(primary[0]) or address[0]
                node = (host, int(primary[1]))
                slots[int(start) : int(end) + 1] = [node] * (int(end) - int(start) + 1)
                if node not in self._seeds:
                    self._seeds.append(node)
            self._slots = slots
            return

    async def aclose(self) -> None:
        """Close every connection and wake every waiter (whose next read then fails)."""
        self.closed = True
        tasks = [link.task for link in self._links.values()] + list(self._moving)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        self._receivers.clear()
        self.fanout.notify_all()


class AsyncHub:
    """A Subscriber on the caller's event loop, for the async backend."""

    def __init__(self, source: NodeSource) -> None:
        """Bind to the running loop and this process."""
        self._loop = asyncio.get_running_loop()
        self._pid = os.getpid()
        self.subscriber = Subscriber(source)

    def usable(self) -> bool:
        """Whether this hub belongs to this process and to the running loop."""
        return self._pid == os.getpid() and asyncio.get_running_loop() is self._loop

    async def subscribe(self, channel: str, waker: Pokeable) -> None:
        """See :meth:`Subscriber.subscribe`."""
        await self.subscriber.subscribe(channel, waker)

    def unsubscribe(self, channel: str, waker: Pokeable) -> None:
        """See :meth:`Subscriber.unsubscribe`."""
        self.subscriber.unsubscribe(channel, waker)

    async def subscribe_many(
        self, pairs: list[tuple[str, Pokeable]], *, confirm: bool = True
    ) -> None:
        """See :meth:`Subscriber.subscribe_many`."""
        await self.subscriber.subscribe_many(pairs, confirm=confirm)

    def confirmed_now(self, channel: str) -> bool:
        """See :meth:`Subscriber.confirmed_now`."""
        return self.subscriber.confirmed_now(channel)

    async def subscribe_receiver(
        self, channel: str, receiver: Receiver, *, confirm: bool = True
    ) -> None:
        """See :meth:`Subscriber.subscribe_receiver`."""
        await self.subscriber.subscribe_receiver(channel, receiver, confirm=confirm)

    def unsubscribe_receiver(self, channel: str, receiver: Receiver) -> None:
        """See :meth:`Subscriber.unsubscribe_receiver`."""
        self.subscriber.unsubscribe_receiver(channel, receiver)

    async def aclose(self) -> None:
        """Close the subscriber's connections."""
        if self._pid == os.getpid():
            await self.subscriber.aclose()


class SyncHub:
    """A Subscriber on an event loop of its own, in one daemon thread, shared by all threads."""

    def __init__(self, source: NodeSource) -> None:
        """Start the loop thread."""
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="taskstore-redis-pubsub", daemon=True
        )
        self._thread.start()
        self.subscriber: Subscriber = self._call(self._make(source))

    @staticmethod
    async def _make(source: NodeSource) -> Subscriber:
        return Subscriber(source)

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def usable(self) -> bool:
        """Whether this hub belongs to this process."""
        return self._pid == os.getpid()

    def subscribe(self, channel: str, waker: Pokeable) -> None:
        """See :meth:`Subscriber.subscribe`; blocks the calling thread."""
        try:
            self._call(self.subscriber.subscribe(channel, waker))
        except BaseException:
            # interrupted here (Ctrl-C) while the loop may still register it: undo there too
            self.unsubscribe(channel, waker)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.subscriber.unsubscribe, channel, waker)
            raise

    def subscribe_many(self, pairs: list[tuple[str, Pokeable]], *, confirm: bool = True) -> None:
        """See :meth:`Subscriber.subscribe_many`; blocks the calling thread."""
        try:
            self._call(self.subscriber.subscribe_many(pairs, confirm=confirm))
        except BaseException:
            for channel, waker in pairs:
                self.unsubscribe(channel, waker)
            raise

    def confirmed_now(self, channel: str) -> bool:
        """See :meth:`Subscriber.confirmed_now`."""
        return self.subscriber.confirmed_now(channel)

    def unsubscribe(self, channel: str, waker: Pokeable) -> None:
        """See :meth:`Subscriber.unsubscribe`: the waker goes at once, the channel on the loop."""
        if self.subscriber.fanout.remove(channel, waker):
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing to undo
                self._loop.call_soon_threadsafe(self.subscriber.release, channel)

    def close(self) -> None:
        """Close the subscriber's connections and stop the thread."""
        if self._pid != os.getpid() or self._loop.is_closed():
            return
        self._call(self.subscriber.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def async_hub(source: NodeSource) -> AsyncHub:
    """A hub on the running event loop (the async backend's)."""
    return AsyncHub(source)


def sync_hub(source: NodeSource) -> SyncHub:
    """A hub with a listener thread (the blocking backend's)."""
    return SyncHub(source)
