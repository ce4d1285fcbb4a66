"""RedisSubscriptionBus: MCP server events reach every replica's ``subscriptions/listen`` streams.

Real parts throughout: MCP SDK 2.x ``MCPServer`` replicas, each with a bus on the
suite's Redis (standalone and cluster), a real SDK client listening on one of them
(in process), a publisher in another OS process, connections killed from the
server side (``CLIENT KILL``) and a server killed and restarted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp.server.subscriptions", reason="needs the MCP SDK 2.x (the `mcp` extra)")

import redis.asyncio
from mcp import Client
from mcp.client.subscriptions import Subscription
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

import taskstore_redis
import taskstore_redis.asyncio as tsa
from taskstore_redis import InvalidArgument, StoreUnavailable
from taskstore_redis.mcp import RedisSubscriptionBus
from taskstore_redis.mcp._bus import decode_event, encode_event
from taskstore_redis.testing import redis_server

ROOT = Path(__file__).resolve().parent.parent
GUARD = 30.0
"""Seconds any awaited condition may take before the test fails (never reached when it works)."""
URI = "file:///docs/readme.md"
LOGGER = "taskstore_redis.mcp"

ALL_EVENTS: list[ServerEvent] = [
    ToolsListChanged(),
    PromptsListChanged(),
    ResourcesListChanged(),
    ResourceUpdated(uri=URI),
    ResourceUpdated(uri="urn:é/ü?x=1&y=\u2028"),
]


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    """The suite's standalone Redis, then its cluster."""
    found: str = request.getfixturevalue(f"{request.param}_url")
    return found


# --- helpers -------------------------------------------------------------------------------


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Return once ``condition`` holds; fail after GUARD seconds."""
    deadline = asyncio.get_running_loop().time() + GUARD
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def admin(url: str) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Run a command on the node that serves a shard channel: ``run(channel, *command)``."""
    probe: Any = redis.asyncio.Redis.from_url(url)  # redis-py leaves execute_command untyped
    nodes: dict[tuple[str, int], Any] = {}
    cluster: redis.asyncio.RedisCluster | None = None
    try:
        if (await probe.info("cluster")).get("cluster_enabled"):
            cluster = redis.asyncio.RedisCluster.from_url(url)
            await cluster.initialize()

        async def run(channel: str, *command: Any) -> Any:
            if cluster is None:
                return await probe.execute_command(*command)
            node = cluster.get_node_from_key(channel)
            assert node is not None
            address = (node.host, int(node.port))
            if address not in nodes:
                nodes[address] = redis.asyncio.Redis(host=address[0], port=address[1])
            return await nodes[address].execute_command(*command)

        yield run
    finally:
        for client in nodes.values():
            await client.aclose()
        if cluster is not None:
            await cluster.aclose()
        await probe.aclose()


async def subscribers(run: Callable[..., Awaitable[Any]], channel: str) -> int:
    """How many connections the server has subscribed to ``channel``."""
    reply = await run(channel, "PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


class Seen:
    """A listener that keeps what it gets."""

    def __init__(self) -> None:
        self.events: list[ServerEvent] = []

    def __call__(self, event: ServerEvent) -> None:
        self.events.append(event)

    async def has(self, event: ServerEvent) -> None:
        async def got() -> bool:
            return event in self.events

        await until(got, f"{event!r} delivered")


async def next_events(subscription: Subscription, count: int) -> list[ServerEvent]:
    """The next ``count`` events of a listen stream."""
    events: list[ServerEvent] = []
    iterator = subscription.__aiter__()
    async with asyncio.timeout(GUARD):
        while len(events) < count:
            events.append(await iterator.__anext__())
    return events


def server(name: str, bus: RedisSubscriptionBus) -> MCPServer:
    """A replica whose tool ``change`` publishes a tools list change and a resource update."""
    mcp = MCPServer(name, subscriptions=bus)

    @mcp.tool()
    async def change(ctx: Context, uri: str) -> str:
        """Announce that the tools and a resource changed."""
        await ctx.notify_tools_changed()
        await ctx.notify_resource_updated(uri)
        return "changed"

    return mcp


def listen(client: Client) -> AbstractAsyncContextManager[Subscription]:
    return client.listen(tools_list_changed=True, resource_subscriptions=[URI])


@asynccontextmanager
async def stores(url: str, prefix: str, count: int) -> AsyncIterator[list[tsa.GenericTaskStore]]:
    """``count`` async stores on ``url`` with key prefix ``prefix``, each its own connections."""
    made = [tsa.GenericTaskStore.from_url(url, prefix=prefix) for _ in range(count)]
    try:
        yield made
    finally:
        for store in made:
            await store.aclose()


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


# --- the wire format and the constructor ------------------------------------------------------


@pytest.mark.parametrize("event", ALL_EVENTS, ids=repr)
def test_every_event_survives_its_message(event: ServerEvent) -> None:
    message = encode_event(event)
    assert decode_event(message) == event
    assert decode_event(message.encode("utf-8")) == event
    assert len(message) < 100


def test_something_that_is_no_event_is_refused_and_nothing_else_decodes() -> None:
    with pytest.raises(InvalidArgument, match="not an MCP server event"):
        encode_event("tools changed")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="uri must be a str"):
        encode_event(ResourceUpdated(uri=5))  # type: ignore[arg-type]
    for message in (
        b"\xff\xfe",
        "not json",
        "[1, 2]",
        "{}",
        '{"v": 2, "kind": "tools_list_changed"}',
        '{"v": 1, "kind": "tool_list_changed"}',
        '{"v": 1, "kind": "resource_updated"}',
        '{"v": 1, "kind": "resource_updated", "uri": ["x"]}',
        '{"v": 1, "kind": 7}',
    ):
        assert decode_event(message) is None, message


@pytest.mark.anyio
async def test_a_bus_needs_an_async_store_on_redis(key_prefix: str) -> None:
    with pytest.raises(InvalidArgument, match="InMemorySubscriptionBus"):
        RedisSubscriptionBus(tsa.GenericTaskStore(tsa.InMemoryBackend()))
    with pytest.raises(InvalidArgument, match="needs an async store on a RedisBackend"):
        RedisSubscriptionBus(taskstore_redis.GenericTaskStore.from_url("redis://127.0.0.1:1"))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="key prefix"):
        RedisSubscriptionBus.from_url("redis://127.0.0.1:1", prefix="a b")
    backend = tsa.RedisBackend.from_url("redis://127.0.0.1:1", prefix=key_prefix)
    bus = RedisSubscriptionBus(tsa.GenericTaskStore(backend))
    assert bus.channel == f"{{{key_prefix}:mcp}}:events"
    assert RedisSubscriptionBus(backend).channel == bus.channel
    await backend.aclose()


# --- delivery across replicas -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_listen_stream_on_one_replica_gets_what_a_tool_on_another_publishes(
    url: str, key_prefix: str
) -> None:
    async with stores(url, key_prefix, 2) as (store_a, store_b):
        bus_a, bus_b = RedisSubscriptionBus(store_a), RedisSubscriptionBus(store_b)
        async with (
            bus_a,
            bus_b,
            Client(server("a", bus_a)) as client_a,
            Client(server("b", bus_b)) as client_b,
            listen(client_b) as on_b,
            listen(client_a) as on_a,
        ):
            await bus_b.start()
            result = await client_a.call_tool("change", {"uri": URI})
            assert not result.is_error
            expected = [ToolsListChanged(), ResourceUpdated(uri=URI)]
            assert await next_events(on_b, 2) == expected
            assert await next_events(on_a, 2) == expected  # the publishing replica's own


@pytest.mark.anyio
async def test_a_bus_started_and_closed_in_the_server_lifespan(url: str, key_prefix: str) -> None:
    async with stores(url, key_prefix, 2) as (store_a, store_b), admin(url) as run:
        bus_a, bus_b = RedisSubscriptionBus(store_a), RedisSubscriptionBus(store_b)

        @asynccontextmanager
        async def lifespan(_: MCPServer) -> AsyncIterator[None]:
            async with bus_b:
                await bus_b.start()
                yield

        replica = MCPServer("b", subscriptions=bus_b, lifespan=lifespan)
        async with bus_a:
            async with Client(replica) as client, listen(client) as stream:
                await bus_a.publish(ResourceUpdated(uri=URI))
                assert await next_events(stream, 1) == [ResourceUpdated(uri=URI)]

            async def released() -> bool:
                return await subscribers(run, bus_b.channel) == 0

            await until(released, "the subscription dropped at shutdown")


@pytest.mark.anyio
@pytest.mark.parametrize("shared", [False, True], ids=["own-connections", "one-store"])
async def test_each_bus_delivers_each_event_once(url: str, key_prefix: str, shared: bool) -> None:
    async with stores(url, key_prefix, 1 if shared else 2) as made:
        bus_a, bus_b = (RedisSubscriptionBus(made[0]), RedisSubscriptionBus(made[-1]))
        seen_a, seen_b = Seen(), Seen()
        bus_a.subscribe(seen_a)
        bus_b.subscribe(seen_b)
        async with bus_a, bus_b:
            await bus_b.start()
            for event in ALL_EVENTS:
                await bus_a.publish(event)
            await bus_b.publish(ToolsListChanged())  # the last: all before it arrived
            await until(
                async_true(lambda: len(seen_a.events) > len(ALL_EVENTS)), "the last event, on a"
            )
            await until(
                async_true(lambda: len(seen_b.events) > len(ALL_EVENTS)), "the last event, on b"
            )
            assert seen_a.events == [*ALL_EVENTS, ToolsListChanged()]
            assert seen_b.events == [*ALL_EVENTS, ToolsListChanged()]


def async_true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return check()

    return condition


@pytest.mark.anyio
async def test_a_listener_that_raises_does_not_stop_the_others(
    url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: ServerEvent) -> None:
        raise RuntimeError(f"listener fault on {event!r}")

    async with stores(url, key_prefix, 2) as (store_a, store_b):
        bus_a, bus_b = RedisSubscriptionBus(store_a), RedisSubscriptionBus(store_b)
        bus_b.subscribe(broken)
        seen = Seen()
        async with bus_a, bus_b, Client(server("b", bus_b)) as client_b, listen(client_b) as on_b:
            bus_b.subscribe(seen)
            await bus_b.start()
            await bus_a.publish(ResourceUpdated(uri=URI))
            await bus_a.publish(ToolsListChanged())
            assert await next_events(on_b, 2) == [ResourceUpdated(uri=URI), ToolsListChanged()]
            await seen.has(ToolsListChanged())
            assert seen.events == [ResourceUpdated(uri=URI), ToolsListChanged()]
    raised = [r for r in caplog.records if r.name == LOGGER and r.exc_info]
    assert len(raised) == 2
    assert all("listener raised" in r.getMessage() for r in raised)


@pytest.mark.anyio
async def test_an_unsubscribed_listener_gets_nothing_more(url: str, key_prefix: str) -> None:
    async with stores(url, key_prefix, 1) as (store,):
        bus = RedisSubscriptionBus(store)
        gone, stays = Seen(), Seen()
        unsubscribe = bus.subscribe(gone)
        bus.subscribe(stays)
        async with bus:
            await bus.publish(PromptsListChanged())
            await stays.has(PromptsListChanged())
            unsubscribe()
            unsubscribe()  # idempotent
            await bus.publish(ToolsListChanged())
            await stays.has(ToolsListChanged())
        assert gone.events == [PromptsListChanged()]


# --- faults -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_killed_subscription_connection_is_subscribed_again(
    url: str, key_prefix: str
) -> None:
    async with (
        stores(url, key_prefix, 2) as (store_a, store_b),
        admin(url) as run,
    ):
        bus_a, bus_b = RedisSubscriptionBus(store_a), RedisSubscriptionBus(store_b)
        seen = Seen()
        bus_b.subscribe(seen)
        async with bus_a, bus_b, Client(server("b", bus_b)) as client_b, listen(client_b) as on_b:
            await bus_a.start()
            await bus_b.start()
            channel = bus_b.channel
            assert await subscribers(run, channel) == 2
            killed = await run(channel, "CLIENT", "KILL", "TYPE", "pubsub")
            assert int(killed) >= 2

            async def both_back() -> bool:
                return await subscribers(run, channel) == 2

            await until(both_back, "both buses subscribed again")
            await bus_a.publish(ResourceUpdated(uri=URI))
            assert await next_events(on_b, 1) == [ResourceUpdated(uri=URI)]
            await seen.has(ResourceUpdated(uri=URI))
            assert seen.events == [ResourceUpdated(uri=URI)]


@pytest.mark.anyio
async def test_messages_that_are_no_events_are_logged_and_ignored(
    url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    garbage: list[bytes | str] = [b"\xff\xfe", "not json", '{"v": 9, "kind": "x"}', "x" * 10_000]
    async with stores(url, key_prefix, 1) as (store,), admin(url) as run:
        bus = RedisSubscriptionBus(store)
        seen = Seen()
        bus.subscribe(seen)
        async with bus:
            await bus.start()
            for message in garbage:
                assert await run(bus.channel, "SPUBLISH", bus.channel, message) == 1
            await bus.publish(ToolsListChanged())
            await seen.has(ToolsListChanged())
            assert seen.events == [ToolsListChanged()]
    ignored = [m for m in messages(caplog) if m.startswith("ignored a message")]
    assert len(ignored) == len(garbage)
    assert all(len(m) < 400 for m in ignored)  # a long message is shown cut


@pytest.mark.redis
@pytest.mark.anyio
async def test_publishing_while_redis_is_down_drops_the_event_and_later_ones_arrive(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    with redis_server() as node:
        options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        async with (
            RedisSubscriptionBus.from_url(node.url, prefix=key_prefix, **options) as bus_a,
            RedisSubscriptionBus.from_url(node.url, prefix=key_prefix, **options) as bus_b,
            admin(node.url) as run,
        ):
            seen = Seen()
            bus_b.subscribe(seen)
            await bus_b.start()
            node.kill()
            await bus_a.publish(ToolsListChanged())  # no error: dropped and logged
            assert any(
                m.startswith("event ToolsListChanged() dropped: it could not be published")
                for m in messages(caplog)
            )
            node.restart()

            async def back() -> bool:
                return await subscribers(run, bus_b.channel) == 1

            await until(back, "the subscription made again")
            await bus_a.publish(ResourceUpdated(uri=URI))
            await seen.has(ResourceUpdated(uri=URI))
            assert seen.events == [ResourceUpdated(uri=URI)]


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_bus_made_while_redis_is_down_subscribes_once_it_is_up(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with redis_server() as node:
        node.kill()
        options: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        async with RedisSubscriptionBus.from_url(node.url, prefix=key_prefix, **options) as bus:
            seen = Seen()
            bus.subscribe(seen)
            with pytest.raises(StoreUnavailable, match="retried in the background"):
                await bus.start()
            await bus.publish(PromptsListChanged())  # dropped, no error
            node.restart()

            async def started() -> bool:
                try:
                    await bus.start()
                except StoreUnavailable:
                    return False
                return True

            await until(started, "the bus subscribed")
            await bus.publish(ResourcesListChanged())
            await seen.has(ResourcesListChanged())
            assert seen.events == [ResourcesListChanged()]
    logged = messages(caplog)
    assert sum(m.startswith("cannot subscribe to") for m in logged) == 1  # once, not per retry
    assert any(m.startswith("event PromptsListChanged() dropped") for m in logged)
    assert f"subscribed to {{{key_prefix}:mcp}}:events at last" in messages(caplog, logging.INFO)


@pytest.mark.anyio
async def test_aclose_drops_the_subscription_and_later_events(
    url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with stores(url, key_prefix, 1) as (store,), admin(url) as run:
        bus = RedisSubscriptionBus(store)
        owning = RedisSubscriptionBus.from_url(url, prefix=key_prefix)
        seen = Seen()
        bus.subscribe(seen)
        await bus.start()
        await owning.start()
        assert await subscribers(run, bus.channel) == 2
        await bus.aclose()
        await owning.aclose()
        await owning.aclose()  # idempotent

        async def none_left() -> bool:
            return await subscribers(run, bus.channel) == 0

        await until(none_left, "no subscription left")
        await bus.publish(ToolsListChanged())  # no error: dropped and logged
        with pytest.raises(StoreUnavailable, match="closed"):
            await bus.start()
        # the store is the caller's, still open; the bus's own backend is closed
        assert await store.backend.spublish(bus.channel, "{}") == 0  # type: ignore[attr-defined]
    assert seen.events == []
    assert "event ToolsListChanged() dropped: the RedisSubscriptionBus is closed" in messages(
        caplog
    )


# --- across processes ---------------------------------------------------------------------------

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
    from taskstore_redis.mcp import RedisSubscriptionBus

    async def main(url: str, prefix: str, uri: str) -> None:
        async with RedisSubscriptionBus.from_url(url, prefix=prefix) as bus:
            await bus.publish(ToolsListChanged())
            await bus.publish(ResourceUpdated(uri=uri))

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.slow
@pytest.mark.anyio
async def test_events_published_by_another_process_reach_a_listen_stream(
    url: str, key_prefix: str
) -> None:
    async with stores(url, key_prefix, 1) as (store,):
        bus = RedisSubscriptionBus(store)
        async with bus, Client(server("b", bus)) as client, listen(client) as stream:
            await bus.start()
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISHER, url, key_prefix, URI, env=env, cwd=ROOT
            )
            async with asyncio.timeout(GUARD):
                assert await child.wait() == 0
            assert await next_events(stream, 2) == [ToolsListChanged(), ResourceUpdated(uri=URI)]
