"""RedisSubscriptionBus: the MCP SDK 2.x ``SubscriptionBus`` over Redis, for many replicas.

An ``MCPServer`` hands the events its handlers publish (``ctx.notify_tools_changed()``,
``ctx.notify_resource_updated(uri)``, ...) to its subscription bus, and the bus hands
them to the server's open ``subscriptions/listen`` streams. The SDK's default bus is
in-process. This one sends each event through Redis, on one shard channel of the
store (``{prefix:mcp}:events``), so that every replica built on the same Redis and
key prefix delivers it to its own streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from .._async._redis import RedisBackend
from .._async._store import GenericTaskStore
from .._core.errors import InvalidArgument, StoreUnavailable, TaskStoreError
from .._redis.pubsub import CONFIRM_TIMEOUT, AsyncHub

__all__ = ["RedisSubscriptionBus"]

logger = logging.getLogger("taskstore_redis.mcp")

Listener = Callable[[ServerEvent], None]

_VERSION = 1
_KINDS: dict[str, ServerEvent] = {
    "tools_list_changed": ToolsListChanged(),
    "prompts_list_changed": PromptsListChanged(),
    "resources_list_changed": ResourcesListChanged(),
}
_KIND_OF: dict[type[Any], str] = {type(event): kind for kind, event in _KINDS.items()}
_RESOURCE_UPDATED = "resource_updated"
_RETRY_FIRST = 0.05
_RETRY_MAX = 2.0


def encode_event(event: ServerEvent) -> str:
    """The JSON message of an event: ``{"v": 1, "kind": ..., "uri": ...}``.

    Raises:
        InvalidArgument: ``event`` is none of the SDK's event types.

    """
    if isinstance(event, ResourceUpdated):
        if not isinstance(event.uri, str):
            raise InvalidArgument(
                f"a resource-updated event's uri must be a str, got {event.uri!r}"
            )
        body: dict[str, Any] = {"v": _VERSION, "kind": _RESOURCE_UPDATED, "uri": event.uri}
    else:
        kind = _KIND_OF.get(type(event))
        if kind is None:
            raise InvalidArgument(f"not an MCP server event: {event!r}")
        body = {"v": _VERSION, "kind": kind}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def decode_event(message: bytes | str) -> ServerEvent | None:
    """The event a message on the channel carries, or None if it is not one this version knows."""
    try:
        body = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("v") != _VERSION:
        return None
    kind = body.get("kind")
    if kind == _RESOURCE_UPDATED:
        uri = body.get("uri")
        return ResourceUpdated(uri=uri) if isinstance(uri, str) else None
    return _KINDS.get(kind) if isinstance(kind, str) else None


class _Start:
    """The subscription of the bus on one event loop: under way, then in place."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.hub: AsyncHub | None = None
        self.registered = asyncio.Event()
        """Set once the bus is registered on the hub (confirmed, or its node unreachable now)."""
        self.settled = asyncio.Event()
        """Set once the first attempt ended, registered or not."""
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        """Why the last attempt failed."""


class _Receiver:
    """The bus's registration on the hub: it gets each message's content."""

    def __init__(self, bus: RedisSubscriptionBus) -> None:
        self._bus = bus

    def poke(self) -> None:
        """Nothing to do: events have no replay, so a resubscription catches nothing up."""

    def receive(self, message: bytes | str) -> None:
        """Decode the message and hand its event to every listener."""
        self._bus._deliver(message)


class RedisSubscriptionBus:
    """A ``SubscriptionBus`` (``mcp.server.subscriptions``) whose events go through Redis.

    Give it to each replica's server: ``MCPServer(..., subscriptions=bus)``. An
    event published by any replica on the same Redis and key prefix reaches the
    ``subscriptions/listen`` streams of every replica, this one included, once per
    replica. Replicas of another key prefix never see it.

    Semantics, as the SDK defines them (fire-and-forget, no replay):

    - ``publish`` sends the event to Redis only; the replica's own listeners get
      it back through Redis like everyone else's, so no replica delivers an event
      twice. While the first subscription of this bus is being made, ``publish``
      waits for it (one round trip), so that the replica's own streams get the
      event.
    - ``publish`` never raises for Redis being unreachable, nor after
      :meth:`aclose`: the event is dropped and logged (warning, logger
      ``taskstore_redis.mcp``). A tool that calls ``ctx.notify_*`` does not
      fail because a change notice could not be sent; clients re-listen and refetch.
    - ``subscribe`` registers the listener at once and starts the Redis
      subscription in the background (on the running event loop) if it is not
      there yet. Events published by others before that subscription is confirmed,
      or while its connection is lost, are not delivered: call :meth:`start` at
      server startup to have it in place before the first listener.
    - The Redis subscription is shared with the backend's task waiters (one
      connection per node and process). A lost connection is subscribed again at
      once, on the node that now serves the channel; the subscription stays until
      :meth:`aclose`, whether or not listeners remain.
    - Listeners are called on the event loop of the subscription, synchronously;
      one that raises is logged and skipped, the others still get the event.
      Messages on the channel that are not events of this format are logged and
      ignored.

    Works on standalone Redis and on Redis Cluster (the channel is a shard channel
    of its own hash tag, ``{prefix:mcp}:events``). asyncio only.
    """

    def __init__(self, store: GenericTaskStore | RedisBackend) -> None:
        """Send events through the Redis of ``store``: an async store or its RedisBackend.

        The bus shares the store's connections and key prefix and does not close
        them: close the store after the bus. (:meth:`from_url` builds a bus that owns
        its connections.)

        Raises:
            InvalidArgument: ``store`` is not an async store on a ``RedisBackend``
                (an in-memory store has no other process to reach: use the SDK's
                ``InMemorySubscriptionBus``).

        """
        backend = store.backend if isinstance(store, GenericTaskStore) else store
        if not isinstance(backend, RedisBackend):
            raise InvalidArgument(
                "RedisSubscriptionBus needs an async store on a RedisBackend "
                "(taskstore_redis.asyncio), got "
                f"{type(backend).__name__}; in one process the SDK's "
                "InMemorySubscriptionBus does"
            )
        self._backend = backend
        self._owns_backend = False
        self._channel = backend.keys.mcp_events_channel()
        self._listeners: dict[object, Listener] = {}
        self._receiver = _Receiver(self)
        self._closed = False
        self._start: _Start | None = None
        self._confirm_timeout = CONFIRM_TIMEOUT

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "taskstore", **options: Any
    ) -> RedisSubscriptionBus:
        """A bus on its own connections to the Redis (or Redis Cluster) at ``url``.

        ``prefix`` must be the key prefix of the stores the replicas use; ``options``
        are those of ``RedisBackend.from_url``. Nothing connects until the first
        call; :meth:`aclose` closes the connections.

        Raises:
            InvalidArgument: a malformed URL, prefix or option.

        """
        bus = cls(RedisBackend.from_url(url, prefix=prefix, **options))
        bus._owns_backend = True
        return bus

    @property
    def channel(self) -> str:
        """The Redis shard channel the events go on."""
        return self._channel

    async def __aenter__(self) -> RedisSubscriptionBus:
        """Return the bus itself (it subscribes on first use, or with :meth:`start`)."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the bus: see :meth:`aclose`."""
        await self.aclose()

    async def start(self) -> None:
        """Subscribe on Redis now; return once the server confirmed the subscription.

        Optional: the first ``subscribe`` starts it too, without waiting. Call it at
        server startup (its lifespan, say) so that events from other replicas reach
        listeners from their first moment on. Idempotent.

        Raises:
            StoreUnavailable: the bus is closed, Redis cannot be reached, or it did not
                confirm in time (the socket timeouts, connect and read; 10 s without
                them). The bus keeps trying in the background, and a later call may
                succeed.

        """
        if self._closed:
            raise StoreUnavailable("the RedisSubscriptionBus is closed")
        start = self._ensure_started()
        await start.settled.wait()
        if not start.registered.is_set():
            raise StoreUnavailable(
                f"cannot subscribe to {self._channel!r} (it is retried in the background): "
                f"{start.error!r}"
            ) from start.error
        try:
            async with asyncio.timeout(self._confirm_timeout):
                assert start.hub is not None, "registered means subscribed through a hub"
                await start.hub.subscriber.wait_confirmed(self._channel)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"the subscription to {self._channel!r} was not confirmed within "
                f"{self._confirm_timeout} s (it is retried in the background)"
            ) from exc

    async def publish(self, event: ServerEvent) -> None:
        """Send ``event`` to every replica's listeners, this one's included, through Redis.

        Never raises for Redis: an event that cannot be sent (Redis unreachable, the
        bus or its store closed) is dropped with a warning, as delivery has no replay
        anyway.

        Raises:
            InvalidArgument: ``event`` is not an MCP server event.

        """
        message = encode_event(event)
        if self._closed:
            logger.warning("event %r dropped: the RedisSubscriptionBus is closed", event)
            return
        if self._listeners:
            # the first subscription of this loop: wait for its first attempt, so that
            # the listeners of this replica get the event too when Redis answers
            await self._ensure_started().settled.wait()
        try:
            await self._backend.spublish(self._channel, message)
        except TaskStoreError as exc:
            logger.warning("event %r dropped: it could not be published (%s)", event, exc)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener`` and return an idempotent unsubscribe callable.

        Starts the Redis subscription on the running event loop if it is not there
        yet (without one, the next :meth:`start` or :meth:`publish` does).
        """
        token = object()
        self._listeners[token] = listener
        if self._closed:
            logger.warning("listener registered on a closed RedisSubscriptionBus gets no events")
        else:
            with contextlib.suppress(RuntimeError):  # no running loop: start later
                self._ensure_started()

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def aclose(self) -> None:
        """Drop the Redis subscription (and close the connections if :meth:`from_url` made them).

        Later events are dropped; idempotent.
        """
        if self._closed:
            return
        self._closed = True
        start, self._start = self._start, None
        if start is not None and start.loop is asyncio.get_running_loop():
            await self._stop_here(start)
        elif start is not None:  # subscribed on another loop: drop it there, if it still runs
            with contextlib.suppress(RuntimeError):
                start.loop.call_soon_threadsafe(self._stop, start)
        if self._owns_backend:
            await self._backend.aclose()

    # --- internals ------------------------------------------------------------------------

    def _ensure_started(self) -> _Start:
        """Start subscribing on the running loop unless that is done or under way there.

        Raises RuntimeError without a running loop.
        """
        loop = asyncio.get_running_loop()
        start = self._start
        if start is not None and start.loop is loop and (start.hub is None or start.hub.usable()):
            return start
        # first use, or another loop or process: subscribe afresh there (a subscription
        # on another loop of this process is left to that loop, which may be gone)
        start = self._start = _Start(loop)
        start.task = loop.create_task(self._subscribe(start))
        return start

    async def _subscribe(self, start: _Start) -> None:
        """Register on the backend's hub, retrying with backoff until it works or the bus closes."""
        delay = _RETRY_FIRST
        failed = False
        while not self._closed:
            try:
                hub = await self._backend.watch_hub()
                self._confirm_timeout = hub.subscriber.confirm_timeout
                await hub.subscribe_receiver(self._channel, self._receiver, confirm=False)
            except Exception as exc:  # StoreUnavailable, or a fault of the client's
                if not failed:
                    logger.warning(
                        "cannot subscribe to %s yet (%r); retrying until it works",
                        self._channel,
                        exc,
                        exc_info=not isinstance(exc, TaskStoreError),
                    )
                failed = True
                start.error = exc
                start.settled.set()
                await asyncio.sleep(delay)
                delay = min(_RETRY_MAX, delay * 2)
                continue
            start.hub = hub
            if failed:
                logger.info("subscribed to %s at last", self._channel)
            start.registered.set()
            start.settled.set()
            return

    def _stop(self, start: _Start) -> None:
        """Cancel the subscribing and drop the subscription (on ``start``'s loop)."""
        if start.task is not None:
            start.task.cancel()
        if start.hub is not None and start.hub.usable():
            start.hub.unsubscribe_receiver(self._channel, self._receiver)

    async def _stop_here(self, start: _Start) -> None:
        self._stop(start)
        if start.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await start.task

    def _deliver(self, message: bytes | str) -> None:
        """Hand the event of a message to every listener, each on its own."""
        event = decode_event(message)
        if event is None:
            logger.warning(
                "ignored a message on %s that is no event: %r", self._channel, message[:200]
            )
            return
        for listener in list(self._listeners.values()):
            try:
                listener(event)
            except Exception:  # fan-out boundary: isolate listeners from each other
                logger.exception("subscription listener raised; the others still get the event")
