"""What the Redis backend costs: round trips per operation, and work bounds at scale.

Round trips are counted with MONITOR (``redis_monitor.py``) on servers of this
module's own, so that no other test's traffic is counted. Work inside scripts is
counted with ``CONFIG RESETSTAT`` and ``INFO commandstats``. Nothing here asserts
a duration: timings belong in benchmarks; the scale test only prints them (``-s``).
"""

from __future__ import annotations

import multiprocessing
import queue
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

import taskstore_redis as ts
from taskstore_redis import ResourceExhausted, SecurityConfig, StoreConfig, StoreUnavailable
from taskstore_redis._core.clock import now_ms
from taskstore_redis._core.model import FORMAT, encode_core
from taskstore_redis._core.rules import new_record
from taskstore_redis._redis.contract import create_call
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import ALL_SCRIPTS, CREATE, PURGE_EXPIRED
from taskstore_redis._sync._redis import _PURGE_BATCH
from taskstore_redis.backend import NewTask, TaskKey
from taskstore_redis.testing import RedisServer, redis_server
from tests.redis_monitor import CommandLog, monitored

StoreFactory = Callable[..., ts.GenericTaskStore]

HOUR = 3_600_000
UNLIMITED = SecurityConfig(max_tasks_per_owner=None)

REMEMBERED_MUTATION_COMMANDS = ["EVALSHA"]
"""What a mutation of a task the store remembers sends: the compare-and-set script alone."""

UNSEEN_MUTATION_COMMANDS = ["HGETALL", "EVALSHA"]
"""What a status or result change of a task the store has not seen sends: a read, then the
compare-and-set. A variable merge sends its script alone, seen or not."""

STALE_MUTATION_COMMANDS = ["EVALSHA", "EVALSHA"]
"""What a mutation of a task changed elsewhere since the store saw it sends: a compare-and-set
that fails and returns the current record, then one on that record."""


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A standalone server of this module's own, so counts are not disturbed."""
    with redis_server() as dedicated:
        yield dedicated


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(server.url) as client:
        yield client


@pytest.fixture
def make_store(server: RedisServer, key_prefix: str) -> Iterator[StoreFactory]:
    """Build warmed-up sync stores on the module's server, under this test's prefix."""
    stores: list[ts.GenericTaskStore] = []

    def make(
        config: StoreConfig | None = None, security: SecurityConfig = UNLIMITED, **options: Any
    ) -> ts.GenericTaskStore:
        store = ts.GenericTaskStore.from_url(
            server.url, config, security, prefix=key_prefix, **options
        )
        stores.append(store)
        warm_up(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def log(server: RedisServer) -> Iterator[CommandLog]:
    with monitored(server.url) as command_log:
        yield command_log


def warm_up(store: ts.GenericTaskStore) -> None:
    """Pay the one-off costs of a store's first call, so that they are not counted.

    The first call probes the server with ``INFO cluster`` on a connection of its
    own, opens the store's connection (``HELLO``), and, on a server that has not
    seen the scripts yet, gets NOSCRIPT and sends ``SCRIPT LOAD`` for each script.
    """
    store.list(owner_id="warm-up-owner")


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT``, leaving out CONFIG itself."""
    stats = client.info("commandstats")
    assert isinstance(stats, dict)
    return {
        name.removeprefix("cmdstat_"): int(entry["calls"])
        for name, entry in stats.items()
        if not name.startswith("cmdstat_config|")
    }


def create_tasks(store: ts.GenericTaskStore, owner: str, count: int) -> list[ts.TaskRecord]:
    return [store.create("tools/call", owner_id=owner) for _ in range(count)]


# --- round trips per operation ------------------------------------------------------------


@pytest.mark.redis
def test_get_sends_exactly_one_command_an_hgetall(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store()
    task = store.create("tools/call", owner_id="alice")
    store.set_variables(task.task.task_id, {"a": 1, "b": [2]}, owner_id="alice")
    log.reset()
    got = store.get(task.task.task_id, owner_id="alice")
    assert (got.task.task_id, got.variables) == (task.task.task_id, {"a": 1, "b": [2]})
    assert log.commands == ["HGETALL"]


@pytest.mark.redis
def test_create_sends_exactly_one_command_an_evalsha(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store()
    log.reset()
    store.create("tools/call", owner_id="alice")
    assert log.commands == ["EVALSHA"]


@pytest.mark.redis
def test_list_of_a_page_of_50_out_of_500_tasks_sends_exactly_one_evalsha(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store()
    create_tasks(store, "alice", 500)
    log.reset()
    page = store.list(owner_id="alice", limit=50)
    assert log.commands == ["EVALSHA"]
    assert len(page.tasks) == 50
    assert page.next_cursor is not None


MUTATIONS: dict[str, Callable[[ts.GenericTaskStore, str], object]] = {
    "update_status": lambda store, task_id: store.update_status(
        task_id, ts.TaskStatus.INPUT_REQUIRED, "waiting", owner_id="alice"
    ),
    "set_variables": lambda store, task_id: store.set_variables(
        task_id, {"k": 1}, owner_id="alice"
    ),
    "cancel": lambda store, task_id: store.cancel(task_id, owner_id="alice"),
    "complete_with_result": lambda store, task_id: store.complete_with_result(
        task_id, ts.TaskStatus.COMPLETED, None, {"ok": True}, owner_id="alice"
    ),
}


@pytest.mark.redis
@pytest.mark.parametrize("operation", list(MUTATIONS))
def test_a_mutation_of_a_task_the_store_remembers_sends_exactly_one_evalsha(
    operation: str, make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store()
    task = store.create("tools/call", owner_id="alice")
    log.reset()
    MUTATIONS[operation](store, task.task.task_id)
    assert log.commands == REMEMBERED_MUTATION_COMMANDS
    assert store.get(task.task.task_id, owner_id="alice").version == 2


@pytest.mark.redis
@pytest.mark.parametrize("operation", list(MUTATIONS))
def test_a_mutation_of_a_task_the_store_has_not_seen_sends_a_read_then_one_evalsha_unless_a_merge(
    operation: str, make_store: StoreFactory, log: CommandLog
) -> None:
    task = make_store().create("tools/call", owner_id="alice")
    other = make_store()  # another process's store, say: it has never seen the task
    log.reset()
    MUTATIONS[operation](other, task.task.task_id)
    expected = ["EVALSHA"] if operation == "set_variables" else UNSEEN_MUTATION_COMMANDS
    assert log.commands == expected
    assert other.get(task.task.task_id, owner_id="alice").version == 2


@pytest.mark.redis
def test_a_worker_that_creates_updates_five_times_and_completes_sends_seven_commands(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store()
    log.reset()
    task_id = store.create("tools/call", owner_id="alice").task.task_id
    for step in range(5):
        store.set_variables(task_id, {"step": step}, owner_id="alice")
    store.complete_with_result(task_id, ts.TaskStatus.COMPLETED, "done", {"n": 5}, owner_id="alice")
    assert log.commands == ["EVALSHA"] * 7
    final = store.get(task_id, owner_id="alice")
    assert (final.version, final.result, final.variables) == (7, {"n": 5}, {"step": 4})


@pytest.mark.redis
def test_a_mutation_of_a_task_with_the_memory_turned_off_sends_a_read_then_one_evalsha(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store(config=StoreConfig(record_cache_size=0))
    task = store.create("tools/call", owner_id="alice")
    log.reset()
    store.cancel(task.task.task_id, owner_id="alice")
    assert log.commands == UNSEEN_MUTATION_COMMANDS


@pytest.mark.redis
def test_a_mutation_of_a_task_changed_elsewhere_sends_a_failed_evalsha_then_one_more(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store, other = make_store(), make_store()
    task = store.create("tools/call", owner_id="alice")
    other.update_status(
        task.task.task_id, ts.TaskStatus.INPUT_REQUIRED, "elsewhere", owner_id="alice"
    )
    log.reset()
    updated = store.cancel(task.task.task_id, owner_id="alice")
    assert log.commands == STALE_MUTATION_COMMANDS
    assert (updated.version, updated.task.status) == (3, ts.TaskStatus.CANCELLED)


@pytest.mark.redis
def test_a_merge_or_a_status_change_after_merges_elsewhere_sends_one_evalsha(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store, other = make_store(), make_store()
    task = store.create("tools/call", owner_id="alice")
    other.set_variables(task.task.task_id, {"elsewhere": True}, owner_id="alice")
    log.reset()
    merged = store.set_variables(task.task.task_id, {"here": True}, owner_id="alice")
    assert log.commands == ["EVALSHA"]
    assert (merged.version, merged.variables) == (3, {"elsewhere": True, "here": True})
    other.set_variables(task.task.task_id, {"again": 1}, owner_id="alice")
    log.reset()
    moved = store.update_status(task.task.task_id, ts.TaskStatus.INPUT_REQUIRED, owner_id="alice")
    assert log.commands == ["EVALSHA"]  # merges never move the core version it checks
    assert moved.version == 5
    assert moved.variables == {"elsewhere": True, "here": True, "again": 1}


@pytest.mark.redis
def test_cleanup_with_nothing_due_sends_one_evalsha_per_shard_and_reads_the_queue_names(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store(shards=4)
    store.create("tools/call", owner_id="alice")  # expires in an hour: not due
    log.reset()
    assert store.cleanup_expired() == 0
    # the purge, then the lease sweep finds no queue (one pipeline of SMEMBERS)
    assert log.commands == ["EVALSHA"] * 4 + ["SMEMBERS"] * 4


# --- work bounds at scale -------------------------------------------------------------------

BULK_TASKS = 100_000
BULK_BATCH = 2_000
PAGE = 50


def bulk_create(
    client: redis.Redis,
    keys: KeySchema,
    owner: str,
    count: int,
    *,
    created_from_ms: int,
    ttl_ms: int,
    purge_at_ms: int,
) -> list[str]:
    """Create ``count`` real tasks for ``owner`` through the create script, pipelined.

    Keys and arguments are those ``RedisBackend.create`` builds; task ``n`` is
    created at ``created_from_ms + n`` and expires ``ttl_ms`` later. Returns the
    task ids, oldest first.
    """
    config = StoreConfig()
    client.script_load(CREATE.source)
    task_ids: list[str] = []
    for start in range(0, count, BULK_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + BULK_BATCH, count)):
            created = created_from_ms + n
            record = new_record(owner, "tools/call", ttl_ms, created, config)
            task = TaskKey(owner, record.task.task_id)
            new = NewTask(
                key=task,
                format=FORMAT,
                data=encode_core(record, created),
                created_at_ms=created,
                expires_at_ms=created + ttl_ms,
                purge_at_ms=purge_at_ms,
                max_live=None,
                now_ms=created,
            )
            script_keys, args = create_call(keys, new, secrets.token_hex(6)).keys_and_args()
            pipe.evalsha(CREATE.sha, len(script_keys), *script_keys, *args)
            task_ids.append(task.task_id)
        replies = pipe.execute()
        assert replies == [1] * len(replies)
    return task_ids


@pytest.mark.slow
@pytest.mark.redis
def test_at_100k_tasks_a_list_page_and_a_purge_batch_do_work_bounded_by_the_page() -> None:
    prefix, owner = "scale", "bulk-owner"
    keys = KeySchema(prefix)
    with (
        redis_server() as dedicated,
        redis.Redis.from_url(dedicated.url) as client,
        ts.GenericTaskStore.from_url(dedicated.url, prefix=prefix) as store,
    ):
        now = now_ms()
        # Expired minutes ago, purged by Redis only in an hour: expired but present.
        task_ids = bulk_create(
            client,
            keys,
            owner,
            BULK_TASKS,
            created_from_ms=now - 10 * 60_000,
            ttl_ms=60_000,
            purge_at_ms=now + HOUR,
        )
        assert client.zcard(keys.index_key(owner)) == BULK_TASKS
        warm_up(store)

        client.config_resetstat()
        started = time.perf_counter()
        page = store.list(owner_id=owner, limit=PAGE)
        list_ms = (time.perf_counter() - started) * 1000
        assert command_calls(client) == {"evalsha": 1, "zrange": 1, "hgetall": PAGE}
        assert [t.task.task_id for t in page.tasks] == task_ids[::-1][:PAGE]
        assert page.next_cursor is not None

        client.config_resetstat()
        second = store.list(owner_id=owner, cursor=page.next_cursor, limit=PAGE)
        assert command_calls(client) == {"evalsha": 1, "zrange": 1, "hgetall": PAGE}
        assert [t.task.task_id for t in second.tasks] == task_ids[::-1][PAGE : 2 * PAGE]

        live = create_tasks(store, owner, 3)  # an hour to live: never purged here

        client.config_resetstat()
        started = time.perf_counter()
        reply = client.evalsha(
            PURGE_EXPIRED.sha, 1, keys.due_key(keys.shard_of(owner)), now_ms(), _PURGE_BATCH
        )
        purge_ms = (time.perf_counter() - started) * 1000
        assert reply == [_PURGE_BATCH, 1]  # bounded, and more work is due
        assert command_calls(client)["del"] == _PURGE_BATCH
        assert client.zcard(keys.index_key(owner)) == BULK_TASKS + len(live) - _PURGE_BATCH

        assert store.cleanup_expired() == BULK_TASKS - _PURGE_BATCH
        remaining = store.list(owner_id=owner, limit=PAGE)
        assert {t.task.task_id for t in remaining.tasks} == {t.task.task_id for t in live}
        assert remaining.next_cursor is None
        assert client.zcard(keys.index_key(owner)) == len(live)
        assert client.zcount(keys.due_key(keys.shard_of(owner)), "-inf", now_ms()) == 0
        print(
            f"\n{BULK_TASKS} tasks of one owner: one list page of {PAGE} took {list_ms:.2f} ms, "
            f"one purge batch of {_PURGE_BATCH} took {purge_ms:.2f} ms"
        )


# --- the quota under concurrency ------------------------------------------------------------

QUOTA = 50
WORKERS = 4
ATTEMPTS_PER_WORKER = 40


def create_until_refused(
    url: str, prefix: str, owner: str, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a worker process
    """Worker: try ``ATTEMPTS_PER_WORKER`` creates; report (created, refused, other errors)."""
    created = refused = 0
    others: list[str] = []
    store = ts.GenericTaskStore.from_url(
        url, prefix=prefix, security=SecurityConfig(max_tasks_per_owner=QUOTA)
    )
    try:
        warm_up(store)
        start.wait(timeout=60)
        for _ in range(ATTEMPTS_PER_WORKER):
            try:
                store.create("tools/call", owner_id=owner)
                created += 1
            except ResourceExhausted:
                refused += 1
            except Exception as exc:
                others.append(repr(exc))
    finally:
        store.close()
        results.put((created, refused, others))


@pytest.mark.slow
@pytest.mark.redis
def test_the_owner_quota_holds_under_concurrent_creates_from_many_processes(
    server: RedisServer, key_prefix: str
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    workers = [
        context.Process(
            target=create_until_refused, args=(server.url, key_prefix, "alice", start, results)
        )
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=120) for _ in workers]
    except queue.Empty:
        pytest.fail("a worker process did not report")
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    assert [others for _, _, others in reports] == [[]] * WORKERS
    assert sum(created for created, _, _ in reports) == QUOTA
    assert sum(refused for _, refused, _ in reports) == WORKERS * ATTEMPTS_PER_WORKER - QUOTA
    with ts.GenericTaskStore.from_url(server.url, prefix=key_prefix) as store:
        page = store.list(owner_id="alice", limit=100)
    assert len(page.tasks) == QUOTA
    assert page.next_cursor is None


# --- NOSCRIPT recovery ----------------------------------------------------------------------


@pytest.mark.redis
def test_after_script_flush_the_next_create_reloads_the_scripts_and_succeeds(
    make_store: StoreFactory, raw: redis.Redis, log: CommandLog
) -> None:
    store = make_store()
    raw.script_flush()
    log.reset()
    task = store.create("tools/call", owner_id="alice")
    assert log.commands == ["EVALSHA", *["SCRIPT LOAD"] * len(ALL_SCRIPTS), "EVALSHA"]
    assert raw.script_exists(*(script.sha for script in ALL_SCRIPTS)) == [True] * len(ALL_SCRIPTS)
    assert [t.task.task_id for t in store.list(owner_id="alice").tasks] == [task.task.task_id]


@pytest.mark.redis
def test_after_script_flush_update_and_list_through_an_existing_store_succeed(
    make_store: StoreFactory, raw: redis.Redis
) -> None:
    store = make_store()
    task = store.create("tools/call", owner_id="alice")
    raw.script_flush()
    updated = store.update_status(task.task.task_id, ts.TaskStatus.INPUT_REQUIRED, owner_id="alice")
    assert updated.version == 2
    raw.script_flush()
    page = store.list(owner_id="alice")
    assert [(t.task.task_id, t.task.status, t.version) for t in page.tasks] == [
        (task.task.task_id, ts.TaskStatus.INPUT_REQUIRED, 2)
    ]


def flush_scripts_on_every_node(cluster_url: str) -> int:
    """``SCRIPT FLUSH`` on each node, through a plain connection to it; return the count."""
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        nodes = [(node.host, node.port) for node in cluster.get_nodes()]
    for host, port in nodes:
        with redis.Redis(host=host, port=port) as node:
            assert node.script_flush()
    return len(nodes)


def owners_on_distinct_shards(keys: KeySchema, count: int) -> list[str]:
    owners: dict[int, str] = {}
    n = 0
    while len(owners) < count:
        owners.setdefault(keys.shard_of(f"owner-{n}"), f"owner-{n}")
        n += 1
    return list(owners.values())


@pytest.mark.cluster
def test_after_script_flush_on_every_cluster_node_operations_on_every_shard_succeed(
    cluster_url: str, key_prefix: str
) -> None:
    keys = KeySchema(key_prefix)
    owners = owners_on_distinct_shards(keys, keys.shards)
    with ts.GenericTaskStore.from_url(cluster_url, prefix=key_prefix) as store:
        warm_up(store)
        for owner in owners:
            assert flush_scripts_on_every_node(cluster_url) >= 3
            task = store.create("tools/call", owner_id=owner)
            flush_scripts_on_every_node(cluster_url)
            store.update_status(task.task.task_id, ts.TaskStatus.INPUT_REQUIRED, owner_id=owner)
            flush_scripts_on_every_node(cluster_url)
            page = store.list(owner_id=owner)
            assert [(t.task.task_id, t.version) for t in page.tasks] == [(task.task.task_id, 2)]


# --- cluster mode detection -----------------------------------------------------------------


@pytest.mark.cluster
def test_from_url_of_a_cluster_node_ends_up_with_a_cluster_client(cluster_url: str) -> None:
    backend = ts.RedisBackend.from_url(cluster_url)
    try:
        assert backend.client is None  # nothing connects before the first call
        assert backend.get(TaskKey("alice", "nope")) is None
        assert isinstance(backend.client, redis.RedisCluster)
    finally:
        backend.close()


@pytest.mark.redis
def test_from_url_of_a_standalone_server_ends_up_with_a_plain_client(redis_url: str) -> None:
    backend = ts.RedisBackend.from_url(redis_url)
    try:
        assert backend.get(TaskKey("alice", "nope")) is None
        assert isinstance(backend.client, redis.Redis)
    finally:
        backend.close()


@pytest.mark.redis
def test_from_url_forced_to_standalone_works_without_probing_the_server(
    server: RedisServer, key_prefix: str, log: CommandLog
) -> None:
    with ts.GenericTaskStore.from_url(server.url, cluster=False, prefix=key_prefix) as store:
        task = store.create("tools/call", owner_id="alice")
        assert store.get(task.task.task_id, owner_id="alice").version == 1
        assert isinstance(store.backend, ts.RedisBackend)
        assert isinstance(store.backend.client, redis.Redis)
    assert "INFO" not in log.commands


# --- spread over the cluster ----------------------------------------------------------------

SPREAD_PREFIX = "costs-spread"
"""A fixed prefix: its 16 hash tags, and so the outcome, are the same on every run."""


def primaries_of(cluster_url: str) -> list[tuple[str, int]]:
    with redis.RedisCluster.from_url(cluster_url) as cluster:
        return [(node.host, node.port) for node in cluster.get_primaries()]


def task_keys_per_primary(cluster_url: str, prefix: str) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for host, port in primaries_of(cluster_url):
        with redis.Redis(host=host, port=port) as node:
            counts[(host, port)] = sum(1 for _ in node.scan_iter(match=f"{{{prefix}:*}}:t:*"))
    return counts


def delete_prefix(cluster_url: str, prefix: str) -> None:
    for host, port in primaries_of(cluster_url):
        with redis.Redis(host=host, port=port) as node:
            for key in node.scan_iter(match=f"{{{prefix}:*"):
                node.delete(key)


@pytest.mark.cluster
def test_two_hundred_owners_spread_their_tasks_over_every_cluster_primary(
    cluster_url: str,
) -> None:
    delete_prefix(cluster_url, SPREAD_PREFIX)
    try:
        with ts.GenericTaskStore.from_url(cluster_url, prefix=SPREAD_PREFIX) as store:
            for n in range(200):
                store.create("tools/call", owner_id=f"owner-{n}")
        counts = task_keys_per_primary(cluster_url, SPREAD_PREFIX)
        assert len(counts) == 3
        assert sum(counts.values()) == 200
        assert all(count > 0 for count in counts.values()), counts
    finally:
        delete_prefix(cluster_url, SPREAD_PREFIX)


# --- errors ---------------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


UNREACHABLE_CALLS: dict[str, Callable[[ts.GenericTaskStore], object]] = {
    "get": lambda store: store.get("some-task", owner_id="alice"),
    "create": lambda store: store.create("tools/call", owner_id="alice"),
    "list": lambda store: store.list(owner_id="alice"),
}


@pytest.mark.parametrize("operation", list(UNREACHABLE_CALLS))
def test_a_store_on_a_closed_port_raises_store_unavailable_caused_by_a_connection_error(
    operation: str,
) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with (
        ts.GenericTaskStore.from_url(url, socket_connect_timeout=0.5) as store,
        pytest.raises(StoreUnavailable) as caught,
    ):
        UNREACHABLE_CALLS[operation](store)
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)


@pytest.mark.redis
def test_from_url_takes_a_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    with (
        redis_server(("--unixsocket", str(socket_path), "--unixsocketperm", "700")) as _,
        ts.GenericTaskStore.from_url(f"unix://{socket_path}", prefix="unix") as store,
    ):
        task_id = store.create("tools/call", owner_id="alice").task.task_id
        assert store.get(task_id, owner_id="alice").task.task_id == task_id
        assert isinstance(store.backend, ts.RedisBackend)
        assert isinstance(store.backend.client, redis.Redis)


@pytest.mark.cluster
def test_wait_replicas_on_a_cluster_is_refused_and_writes_nothing(cluster_url: str) -> None:
    with ts.GenericTaskStore.from_url(cluster_url, prefix="waitcluster", wait_replicas=1) as store:
        with pytest.raises(ts.InvalidArgument, match="not on Redis Cluster"):
            store.create("tools/call", owner_id="alice")
        assert store.list(owner_id="alice").tasks == []


@pytest.mark.redis
def test_a_closed_store_refuses_calls_instead_of_reconnecting(redis_url: str) -> None:
    store = ts.GenericTaskStore.from_url(redis_url, prefix="closed")
    task_id = store.create("tools/call", owner_id="alice").task.task_id
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get(task_id, owner_id="alice")


# --- work queues ----------------------------------------------------------------------------


@pytest.mark.redis
def test_a_first_claim_of_an_empty_queue_asks_every_shard_in_one_pipeline(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store(shards=4)
    warm_up(store)
    log.reset()
    assert store.claim("idle", timeout=0) is None
    # one read-only script per shard, pipelined; then no claim script at all (the
    # subscription and the set-up of any new connection aside)
    setup = {"SSUBSCRIBE", "CLIENT SETINFO", "HELLO"}
    assert [name for name in log.commands if name not in setup] == ["EVALSHA"] * 4


@pytest.mark.redis
def test_an_idle_claim_waits_without_sending_a_command(
    make_store: StoreFactory, log: CommandLog
) -> None:
    store = make_store(shards=4)
    assert store.claim("idle", timeout=0) is None  # subscribed; every shard known empty
    log.reset()
    assert store.claim("idle", timeout=0) is None
    assert store.claim("idle", timeout=0.3) is None
    assert log.commands == []


@pytest.mark.redis
def test_a_claim_after_a_submit_notice_runs_one_claim_script(
    make_store: StoreFactory, log: CommandLog
) -> None:
    worker, client = make_store(shards=4), make_store(shards=4)
    assert worker.claim("busy", timeout=0) is None
    client.submit("tools/call", 1, owner_id="alice", queue="busy")
    log.reset()
    lease = worker.claim("busy", timeout=5)
    assert lease is not None and lease.params == 1
    assert log.commands == ["EVALSHA"]
