"""``taskstore-redis doctor`` reports persistence and replication against the docs' "Durability".

What a node keeps across a restart (AOF and its fsync policy, RDB snapshots) and
what a failover may lose (replicas, ``min-replicas-to-write``) are reported per
node as ``durability`` lines, with ``advice`` where the docs' "Durability" says
better; advice does not make the server unhealthy. ``CONFIG GET`` is only sent
where the user may send it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis

from taskstore_redis._cli.main import main
from taskstore_redis.testing import RedisServer, redis_server

from .test_acl import ACL_RULES, make_user, refusals

pytestmark = pytest.mark.redis


def doctor(
    url: str, capsys: pytest.CaptureFixture[str], prefix: str = "taskstore"
) -> tuple[int, str]:
    code = main(["doctor", "--redis-url", url, "--prefix", prefix])
    out = capsys.readouterr().out
    return code, re.sub(r"\n {13}", " ", out)  # wrapped lines joined again


def lines(out: str, label: str) -> list[str]:
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith(label + " ")]


@pytest.fixture(scope="module")
def primary_with_replica() -> Iterator[RedisServer]:
    args = ["--appendonly", "yes", "--appendfsync", "always"]
    with (
        redis_server(args) as primary,
        redis_server(["--replicaof", "127.0.0.1", str(primary.port)]),
        redis.Redis.from_url(primary.url) as client,
    ):
        deadline = time.monotonic() + 20
        while client.info("replication")["connected_slaves"] < 1:
            assert time.monotonic() < deadline, "the replica never connected"
            time.sleep(0.05)
        yield primary


def test_a_server_without_persistence_or_replica_gets_advice_but_stays_healthy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with redis_server() as server:  # the throwaway servers keep nothing on disk
        code, out = doctor(server.url, capsys)
    node = f"127.0.0.1:{server.port}"
    assert code == 0, out
    assert lines(out, "durability") == [
        f"{node}: AOF off, RDB snapshots off",
        f"{node}: role master, 0 replicas, min-replicas-to-write 0",
    ]
    assert lines(out, "advice") == [
        f"{node}: a restart loses every task; appendonly yes and appendfsync always keep "
        "every acknowledged write",
        f"{node}: no replica: a lost server loses its tasks",
    ]
    assert out.rstrip().endswith("healthy")


def test_aof_everysec_and_rdb_snapshots_are_reported_with_what_they_may_lose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with redis_server(["--appendonly", "yes", "--appendfsync", "everysec"]) as server:
        _, out = doctor(server.url, capsys)
        assert f"127.0.0.1:{server.port}: AOF on, appendfsync everysec" in lines(out, "durability")
        assert any("loses the writes of the last second" in line for line in lines(out, "advice"))
    with redis_server(["--save", "60 100"]) as server:
        _, out = doctor(server.url, capsys)
        assert f"127.0.0.1:{server.port}: AOF off, RDB snapshots (save '60 100')" in lines(
            out, "durability"
        )
        assert any(
            "a restart loses the tasks written since the last snapshot" in line
            for line in lines(out, "advice")
        )


def test_aof_always_with_a_replica_advises_only_about_asynchronous_replication(
    primary_with_replica: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    node = f"127.0.0.1:{primary_with_replica.port}"
    code, out = doctor(primary_with_replica.url, capsys)
    assert code == 0, out
    assert lines(out, "durability") == [
        f"{node}: AOF on, appendfsync always",
        f"{node}: role master, 1 replicas, min-replicas-to-write 0",
    ]
    [advice] = lines(out, "advice")
    assert "replication is asynchronous" in advice
    assert "wait_replicas=N, or min-replicas-to-write" in advice


def test_min_replicas_to_write_leaves_no_advice(
    primary_with_replica: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with redis.Redis.from_url(primary_with_replica.url) as client:
        client.config_set("min-replicas-to-write", 1)
        try:
            code, out = doctor(primary_with_replica.url, capsys)
        finally:
            client.config_set("min-replicas-to-write", 0)
    assert code == 0, out
    assert any("min-replicas-to-write 1" in line for line in lines(out, "durability"))
    assert lines(out, "advice") == []


def test_a_user_without_config_gets_the_info_facts_and_no_refusal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with (
        redis_server() as server,
        redis.Redis.from_url(server.url, decode_responses=True) as admin,
    ):
        user = make_user(server, admin, ACL_RULES)
        assert "+config" not in ACL_RULES
        code, out = doctor(user.url, capsys, user.prefix)
        assert refusals(admin, user) == []
    assert code == 0, out
    node = f"127.0.0.1:{server.port}"
    assert lines(out, "durability") == [
        f"{node}: AOF off, RDB snapshots unknown (CONFIG not allowed)",
        f"{node}: role master, 0 replicas, min-replicas-to-write ?",
    ]


@pytest.mark.cluster
def test_doctor_reports_durability_for_every_primary_of_a_cluster(
    cluster_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = doctor(cluster_url, capsys)
    assert code == 0, out
    roles = [line for line in lines(out, "durability") if "role master" in line]
    assert len(roles) == 3, out
    assert len({line.split(":")[1] for line in roles}) == 3  # three ports
    assert all(re.match(r"\S+: AOF off", line) for line in lines(out, "durability")[::2])
