"""Closing a store closes every socket it opened: none is left to the garbage collector.

A socket left open is closed by garbage collection, which reports it as a
``ResourceWarning`` (an error under this suite's ``filterwarnings = error``, and
at the final collection of a test run, an exit code of 1 after every test passed).
Each test lists the open sockets (``gc.get_objects``, without a collection, so a
socket waiting for the collector counts as open) before and after a store's life.
"""

from __future__ import annotations

import gc
import socket
from urllib.parse import urlsplit

import pytest
import redis

import taskstore_redis as ts
import taskstore_redis.asyncio as tsa

OWNER = "alice"
METHOD = "tools/call"


def open_sockets() -> dict[int, socket.socket]:
    found = {}
    for thing in gc.get_objects():
        if isinstance(thing, socket.socket) and thing.fileno() != -1:
            found[id(thing)] = thing
    return found


def server_ports(url: str) -> set[int]:
    """The port of ``url`` and, on a cluster, of every node."""
    port = urlsplit(url).port
    assert port is not None
    ports = {port}
    with redis.Redis.from_url(url) as client:
        if client.info("cluster").get("cluster_enabled"):
            ports |= {int(address.rsplit(":", 1)[1]) for address in client.cluster("NODES")}
    return ports


def left_open(before: dict[int, socket.socket], ports: set[int]) -> list[socket.socket]:
    left = []
    for key, sock in open_sockets().items():
        if key in before:
            continue
        try:
            port = sock.getpeername()[1]
        except OSError:
            continue
        if port in ports:
            left.append(sock)
    return left


@pytest.fixture(
    params=[
        pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
        pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(request.param)
    return value


def test_a_blocking_store_closed_leaves_no_socket_open(url: str, key_prefix: str) -> None:
    ports = server_ports(url)
    before = open_sockets()
    with ts.GenericTaskStore.from_url(url, prefix=key_prefix) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        store.set_variables(task_id, {"n": 1}, owner_id=OWNER)
        assert store.get(task_id, owner_id=OWNER).variables == {"n": 1}
        assert store.queue_stats().ready == 0
        with pytest.raises(ts.WaitTimeout):
            store.wait_for_result(task_id, owner_id=OWNER, timeout=0.05)
    assert left_open(before, ports) == []


@pytest.mark.anyio
async def test_an_async_store_closed_leaves_no_socket_open(url: str, key_prefix: str) -> None:
    ports = server_ports(url)
    before = open_sockets()
    async with tsa.GenericTaskStore.from_url(url, prefix=key_prefix) as store:
        task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
        await store.set_variables(task_id, {"n": 1}, owner_id=OWNER)
        assert (await store.get(task_id, owner_id=OWNER)).variables == {"n": 1}
        assert (await store.queue_stats()).ready == 0
        with pytest.raises(ts.WaitTimeout):
            await store.wait_for_result(task_id, owner_id=OWNER, timeout=0.05)
    assert left_open(before, ports) == []
