"""Waiting on Redis: across processes, over one connection, through lost connections and failovers.

Each test starts the waiter, learns from a hook that its subscription is in
place, then acts (another process writes, a connection is killed, the server
restarts, the cluster fails over) and checks that the waiter returns what was
written. Nothing here measures time: a waiter that hangs runs into ``GUARD``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio
import pytest
import redis

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa
from taskstore_redis import SecurityConfig, StoreUnavailable, TaskStatus
from taskstore_redis._redis.pubsub import Subscriber
from taskstore_redis.backend import TaskKey
from taskstore_redis.testing import RedisCluster, RedisServer, redis_cluster, redis_server
from tests._sync.test_wait_races import on_subscribed, registrations

pytestmark = pytest.mark.slow  # cluster failovers and slot moves, child processes

OWNER = "alice"
METHOD = "tools/call"
GUARD = 30.0
UNLIMITED = SecurityConfig(max_tasks_per_owner=None)


def admin(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def subscription_clients(
    port: int, prefix: str, others: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The connections of one node that hold shard channels, once ``prefix``'s tasks have some.

    ``others``: ids of connections that are not the test's (see :func:`subscribers`).
    """
    with admin(port) as control:
        channels = control.execute_command("PUBSUB", "SHARDCHANNELS", f"{{{prefix}:*")
        clients = control.client_list()
    assert isinstance(channels, list)
    if not channels:
        return []
    return [c for c in clients if int(c.get("ssub", 0)) > 0 and c["id"] not in others]


def subscribers(port: int) -> frozenset[str]:
    """Ids of the node's connections holding shard channels now (before a test subscribes)."""
    with admin(port) as control:
        return frozenset(c["id"] for c in control.client_list() if int(c.get("ssub", 0)) > 0)


def retry(call: Callable[[], Any], seconds: float = GUARD) -> Any:
    """Call until the store is available again (after a restart or failover)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_in_thread(
    store: ts.GenericTaskStore, task_id: str, **arguments: Any
) -> tuple[ThreadPoolExecutor, Future[Any]]:
    pool = ThreadPoolExecutor(max_workers=1)
    return pool, pool.submit(store.wait, task_id, owner_id=OWNER, timeout=GUARD, **arguments)


@pytest.mark.redis
def test_a_write_from_another_process_wakes_the_waiter(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        child = (
            "import taskstore_redis as ts, sys\n"
            "url, prefix, task_id = sys.argv[1:]\n"
            "with ts.GenericTaskStore.from_url(url, prefix=prefix) as store:\n"
            "    store.complete_with_result(\n"
            "        task_id, 'completed', None, {'by': 'child'}, owner_id='alice'\n"
            "    )\n"
        )
        writer: list[subprocess.CompletedProcess[bytes]] = []

        def write_from_a_child() -> None:
            argv = [sys.executable, "-c", child, redis_url, key_prefix, task_id]
            thread = threading.Thread(target=lambda: writer.append(subprocess.run(argv)))
            thread.start()

        on_subscribed(monkeypatch, store, write_from_a_child)
        assert store.wait_for_result(task_id, owner_id=OWNER, timeout=GUARD) == {"by": "child"}
        assert writer == [] or writer[0].returncode == 0


@pytest.mark.redis
def test_a_killed_subscription_connection_does_not_leave_the_waiter_hanging(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store,
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as writer,
        admin(port_of(redis_url)) as control,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id

        def kill_then_write() -> None:
            assert control.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            # published while the subscription is down: only the re-read after it is back
            # can see this write
            writer.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)

        on_subscribed(monkeypatch, store, kill_then_write)
        record = store.wait(task_id, owner_id=OWNER, after_version=1, timeout=GUARD)
        assert record.task.status is TaskStatus.INPUT_REQUIRED
        monkeypatch.undo()
        # and the next wait still works, on the new connection
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            retry(lambda: writer.cancel(task_id, owner_id=OWNER))
            assert waiting.result(GUARD).task.status is TaskStatus.CANCELLED


@pytest.mark.redis
def test_a_subscription_connection_killed_while_waiting_is_replaced_and_the_waiter_woken(
    redis_url: str, key_prefix: str
) -> None:
    with (
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store,
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as writer,
        admin(port_of(redis_url)) as control,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        others = subscribers(port_of(redis_url))
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            deadline = time.monotonic() + GUARD
            while not subscription_clients(port_of(redis_url), key_prefix, others):
                assert time.monotonic() < deadline, "the waiter never subscribed"
                time.sleep(0.01)
            for _ in range(3):
                control.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            writer.complete_with_result(task_id, TaskStatus.COMPLETED, None, 1, owner_id=OWNER)
            assert waiting.result(GUARD).task.status is TaskStatus.COMPLETED
        assert registrations(store) == 0


@pytest.mark.redis
def test_the_socket_timeout_does_not_cut_a_long_wait(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix, socket_timeout=0.2) as store,
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as writer,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        subscribed = threading.Event()
        on_subscribed(monkeypatch, store, subscribed.set)
        others = subscribers(port_of(redis_url))
        pool, waiting = wait_in_thread(store, task_id)
        with pool:
            assert subscribed.wait(GUARD)
            before = subscription_clients(port_of(redis_url), key_prefix, others)
            time.sleep(1.0)  # five socket timeouts of silence on the subscription
            after = subscription_clients(port_of(redis_url), key_prefix, others)
            writer.set_variables(task_id, {"late": True}, owner_id=OWNER)
            assert waiting.result(GUARD).variables == {"late": True}
        # the same connection all along: never cut by the timeout, never replaced
        assert len(before) == 1
        assert [client["id"] for client in before] == [client["id"] for client in after]


def listener_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "taskstore-redis-pubsub"}


@pytest.mark.redis
def test_a_blocking_store_has_one_listener_thread_and_stops_it_on_close(
    redis_url: str, key_prefix: str
) -> None:
    before = listener_threads()
    with ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store:
        task_ids = [store.create(METHOD, owner_id=OWNER).task.task_id for _ in range(3)]

        def wait(n: int) -> str:
            try:
                store.wait(task_ids[n % 3], owner_id=OWNER, timeout=0.05)
            except ts.WaitTimeout:
                return "timeout"
            return "returned"

        with ThreadPoolExecutor(max_workers=6) as pool:
            outcomes = list(pool.map(wait, range(12)))
        assert outcomes == ["timeout"] * 12
        assert len(listener_threads() - before) == 1
    assert listener_threads() == before


@pytest.mark.redis
def test_two_thousand_waiters_share_one_connection(redis_url: str, key_prefix: str) -> None:
    waiters = 2_000
    owners = [f"owner-{n}" for n in range(20)]

    async def main() -> None:
        async with tsa.GenericTaskStore.from_url(
            redis_url, prefix=key_prefix, security=UNLIMITED
        ) as store:
            task_ids = [
                (owners[n % 20], (await store.create(METHOD, owner_id=owners[n % 20])).task.task_id)
                for n in range(waiters)
            ]
            others = subscribers(port_of(redis_url))
            async with anyio.create_task_group() as group:
                for owner, task_id in task_ids:
                    group.start_soon(functools.partial(store.wait, task_id, owner_id=owner))
                backend: Any = store.backend
                deadline = time.monotonic() + GUARD
                while True:  # until every subscription has reached the server
                    clients = await anyio.to_thread.run_sync(
                        subscription_clients, port_of(redis_url), key_prefix, others
                    )
                    if sum(int(client["ssub"]) for client in clients) == waiters:
                        break
                    assert time.monotonic() < deadline, "the waiters never all subscribed"
                    await anyio.sleep(0.05)
                assert len(clients) == 1
                assert backend.watch_registrations() == waiters
                group.cancel_scope.cancel()
            assert backend.watch_registrations() == 0

    anyio.run(main)


@pytest.mark.cluster
def test_on_a_cluster_waiters_hold_one_connection_per_primary_at_most(
    cluster_url: str, key_prefix: str
) -> None:
    waiters = 300
    owners = [f"owner-{n}" for n in range(30)]  # spread over the shards, so over the nodes

    async def main() -> None:
        async with tsa.GenericTaskStore.from_url(
            cluster_url, prefix=key_prefix, security=UNLIMITED
        ) as store:
            task_ids = [
                (owners[n % 30], (await store.create(METHOD, owner_id=owners[n % 30])).task.task_id)
                for n in range(waiters)
            ]
            backend: Any = store.backend
            nodes = [node.port for node in backend.client.get_primaries()]
            others = [subscribers(port) for port in nodes]
            async with anyio.create_task_group() as group:
                for owner, task_id in task_ids:
                    group.start_soon(functools.partial(store.wait, task_id, owner_id=owner))
                deadline = time.monotonic() + GUARD
                while True:  # until every subscription has reached its node
                    per_node = [
                        await anyio.to_thread.run_sync(
                            subscription_clients, port, key_prefix, ignored
                        )
                        for port, ignored in zip(nodes, others, strict=True)
                    ]
                    held = sum(int(c["ssub"]) for clients in per_node for c in clients)
                    if held == waiters:
                        break
                    assert time.monotonic() < deadline, "the waiters never all subscribed"
                    await anyio.sleep(0.05)
                assert all(len(clients) <= 1 for clients in per_node)
                assert sum(len(clients) for clients in per_node) >= 2  # spread over nodes
                for owner, task_id in task_ids:
                    await store.cancel(task_id, owner_id=owner)
            assert backend.watch_registrations() == 0

    anyio.run(main)


# --- restarts and failovers, on servers of their own -------------------------------------


@pytest.fixture
def durable_server() -> Iterator[RedisServer]:
    with redis_server(["--appendonly", "yes", "--appendfsync", "always"]) as started:
        yield started


@pytest.mark.redis
def test_a_server_restart_while_waiting_does_not_leave_the_waiter_hanging(
    durable_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = durable_server.url
    with (
        ts.GenericTaskStore.from_url(url, prefix="restart") as store,
        ts.GenericTaskStore.from_url(url, prefix="restart") as writer,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        subscribed = threading.Event()
        on_subscribed(monkeypatch, store, subscribed.set)
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            assert subscribed.wait(GUARD)
            durable_server.restart()
            retry(
                lambda: writer.complete_with_result(task_id, "completed", None, 5, owner_id=OWNER)
            )
            record = waiting.result(GUARD)
        assert record.task.status is TaskStatus.COMPLETED
        assert record.result == 5


@pytest.fixture
def failover_cluster() -> Iterator[RedisCluster]:
    with redis_cluster(primaries=3, replicas=1) as started:
        yield started


def primary_and_replica(cluster: RedisCluster, channel: str) -> tuple[RedisServer, RedisServer]:
    """The primary of ``channel``'s slot and its replica, once the replica is listed."""
    slot = redis.crc.key_slot(channel.encode())
    by_port = {node.port: node for node in cluster.nodes}
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        with admin(cluster.nodes[0].port) as control:
            rows = control.execute_command("CLUSTER", "SLOTS")
        for start, end, primary, *replicas in rows:
            if int(start) <= slot <= int(end) and replicas:
                return by_port[int(primary[1])], by_port[int(replicas[0][1])]
        time.sleep(0.05)
    raise AssertionError("the slot's replica never showed up")


def role(node: RedisServer) -> str:
    try:
        with admin(node.port) as control:
            return str(control.info("replication")["role"])
    except redis.exceptions.RedisError:
        return "unreachable"


@pytest.mark.cluster
@pytest.mark.parametrize("how", ["manual-failover", "primary-killed"])
def test_a_cluster_failover_while_waiting_does_not_leave_the_waiter_hanging(
    failover_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    url = failover_cluster.url
    with (
        ts.GenericTaskStore.from_url(url, prefix="failover", socket_timeout=1) as store,
        ts.GenericTaskStore.from_url(url, prefix="failover", socket_timeout=1) as writer,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        backend: Any = store.backend
        channel = backend.keys.channel(TaskKey(OWNER, task_id))
        assert redis.crc.key_slot(channel.encode()) == redis.crc.key_slot(
            backend.keys.task_key(TaskKey(OWNER, task_id)).encode()
        )
        primary, replica = primary_and_replica(failover_cluster, channel)
        subscribed = threading.Event()
        on_subscribed(monkeypatch, store, subscribed.set)
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            assert subscribed.wait(GUARD)
            if how == "manual-failover":
                with admin(replica.port) as control:
                    control.execute_command("CLUSTER", "FAILOVER")
            else:
                primary.kill()
            deadline = time.monotonic() + GUARD
            while role(replica) != "master":
                assert time.monotonic() < deadline, "no failover"
                time.sleep(0.05)
            retry(
                lambda: writer.complete_with_result(task_id, "completed", None, 9, owner_id=OWNER)
            )
            record = waiting.result(GUARD)
        assert record.result == 9
        # a new wait subscribes on the new primary and is woken from there
        other = store.create(METHOD, owner_id=OWNER).task.task_id
        monkeypatch.undo()
        pool, waiting = wait_in_thread(store, other, until_terminal=True)
        with pool:
            retry(lambda: writer.cancel(other, owner_id=OWNER))
            assert waiting.result(GUARD).task.status is TaskStatus.CANCELLED


def node_ids(cluster: RedisCluster) -> dict[int, str]:
    with admin(cluster.nodes[0].port) as control:
        nodes: dict[str, dict[str, Any]] = control.cluster("NODES")
    return {
        int(address.rsplit(":", 1)[1].split("@")[0]): e["node_id"] for address, e in nodes.items()
    }


def migrate_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """Move one slot, with its keys, from the primary at ``source`` to the one at ``target``."""
    ids = node_ids(cluster)
    with admin(source) as src, admin(target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for node in cluster.nodes:
            with admin(node.port) as control:
                control.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    with redis_cluster(primaries=3) as started:
        yield started


@pytest.mark.cluster
def test_a_slot_moved_while_waiting_takes_the_subscription_to_its_new_node(
    own_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = own_cluster.url
    with (
        ts.GenericTaskStore.from_url(url, prefix="moving") as store,
        ts.GenericTaskStore.from_url(url, prefix="moving") as writer,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        backend: Any = store.backend
        channel = backend.keys.channel(TaskKey(OWNER, task_id))
        slot = redis.crc.key_slot(channel.encode())
        with admin(port_of(url)) as control:
            rows = control.execute_command("CLUSTER", "SLOTS")
        source = next(int(row[2][1]) for row in rows if int(row[0]) <= slot <= int(row[1]))
        target = next(node.port for node in own_cluster.nodes if node.port != source)
        dropped: list[str] = []
        original_dropped = Subscriber.dropped

        def record_dropped(subscriber: Subscriber, channel: str) -> None:
            dropped.append(channel)
            original_dropped(subscriber, channel)

        monkeypatch.setattr(Subscriber, "dropped", record_dropped)
        subscribed = threading.Event()
        on_subscribed(monkeypatch, store, subscribed.set)
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            assert subscribed.wait(GUARD)
            migrate_slot(own_cluster, slot, source, target)
            deadline = time.monotonic() + GUARD
            while not subscription_clients(target, "moving"):  # the waiter follows the slot
                assert time.monotonic() < deadline, "the subscription did not follow the slot"
                time.sleep(0.02)
            retry(
                lambda: writer.complete_with_result(task_id, "completed", None, 3, owner_id=OWNER)
            )
            assert waiting.result(GUARD).result == 3
        # the old owner of the slot unsubscribed the channel; the listener followed
        assert dropped == [channel]


@pytest.mark.redis
def test_a_silent_subscription_connection_is_found_by_its_ping_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that stops answering (paused here) leaves no waiter on a dead connection."""
    monkeypatch.setattr(
        Subscriber, "__init__", functools.partialmethod(Subscriber.__init__, health_interval=0.1)
    )
    with (
        redis_server() as server,
        ts.GenericTaskStore.from_url(server.url, prefix="silent") as store,
        ts.GenericTaskStore.from_url(server.url, prefix="silent") as writer,
        admin(server.port) as control,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        subscribed = threading.Event()
        on_subscribed(monkeypatch, store, subscribed.set)
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            assert subscribed.wait(GUARD)
            first = [client["id"] for client in subscription_clients(server.port, "silent")]
            # no answer to anything for 1 s: ten health intervals
            control.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            deadline = time.monotonic() + GUARD
            while True:  # the waiter still waits; its subscription moves to a new connection
                now = [c["id"] for c in subscription_clients(server.port, "silent")]
                if now and now != first:
                    break
                assert time.monotonic() < deadline, "the silent connection was never replaced"
                time.sleep(0.02)
            assert not waiting.done()
            writer.cancel(task_id, owner_id=OWNER)
            assert waiting.result(GUARD).task.status is TaskStatus.CANCELLED
        assert len(first) == 1


@pytest.mark.redis
def test_a_subscription_link_outlives_a_failure_of_the_client_while_connecting(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Subscriber.open
    failures: list[int] = []

    async def open_failing_once(subscriber: Subscriber, address: Any) -> Any:
        if not failures:
            failures.append(1)
            # what a connection torn down under a command raises inside redis-py
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        return await original(subscriber, address)

    monkeypatch.setattr(Subscriber, "open", open_failing_once)
    with (
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as store,
        ts.GenericTaskStore.from_url(redis_url, prefix=key_prefix) as writer,
    ):
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        pool, waiting = wait_in_thread(store, task_id, until_terminal=True)
        with pool:
            retry(lambda: writer.cancel(task_id, owner_id=OWNER))
            assert waiting.result(GUARD).task.status is TaskStatus.CANCELLED
    assert failures == [1]
