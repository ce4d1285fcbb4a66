"""Fault injection: what a caller of the store sees when Redis fails, and what still holds.

Every test runs on throwaway servers of its own (``taskstore_redis.testing``), so it
may kill, pause, flush or fail them over. The faults:

- Redis SIGKILLed and restarted in the middle of a load, without and with an
  append-only file (``appendfsync always``);
- ``SCRIPT FLUSH`` in the middle of a load, and right after the backend reloaded;
- the store's connections killed (``CLIENT KILL``) in the middle of a load;
- a server paused (``CLIENT PAUSE``) for longer than the socket timeout;
- replies lost on the way back, by a small lock-step TCP proxy in front of Redis;
- a cluster primary failed over (manually, and by killing it);
- ``WAIT`` for replicas, met and not met.

Each load runs on a thread of its own, in a loop bounded in rounds and in time,
and writes a ledger: for each write, whether the store reported it done, refused
(``StoreUnavailable`` with ``outcome_unknown=False``) or of unknown outcome. After
the fault, :func:`check_ledger` holds the stored tasks against it: every write
reported done is there, no refused write is, and no write was applied twice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hiredis
import pytest
import redis
import redis.crc
import redis.exceptions

import taskstore_redis as ts
from taskstore_redis import (
    InvalidTransition,
    SecurityConfig,
    StoreUnavailable,
    TaskNotFound,
    TaskRecord,
    TaskStatus,
)
from taskstore_redis._redis.contract import Code
from taskstore_redis._redis.keys import KeySchema
from taskstore_redis._redis.scripts import (
    ALL_SCRIPTS,
    COMPARE_AND_SET,
    CREATE,
    MERGE_VARIABLES,
    RELEASE,
)
from taskstore_redis.backend import TaskKey
from taskstore_redis.testing import RedisCluster, RedisServer, redis_cluster, redis_server

pytestmark = pytest.mark.slow  # servers killed, paused, failed over

HOST = "127.0.0.1"
OWNER = "alice"
METHOD = "tools/call"
SOCKET_TIMEOUT = 1.0
CONNECT_TIMEOUT = 0.5
HANG = 5.0
"""A call still running after this long is taken as hung (only to detect hangs)."""
UNLIMITED = SecurityConfig(max_tasks_per_owner=None)


# --- servers, clients and stores --------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def server_with(*extra_args: str) -> Iterator[RedisServer]:
    """A throwaway server started with extra ``redis-server`` arguments (they survive restarts)."""
    with redis_server(extra_args) as started:
        yield started


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


@contextlib.contextmanager
def admin(port: int, *, timeout: float = HANG) -> Iterator[redis.Redis]:
    """A plain connection for the test's own commands (never through the store)."""
    with redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    ) as client:
        yield client


@contextlib.contextmanager
def open_store(
    url: str, *, prefix: str = "faults", **options: Any
) -> Iterator[ts.GenericTaskStore]:
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
    with ts.GenericTaskStore.from_url(url, security=UNLIMITED, prefix=prefix, **options) as store:
        yield store


def redis_key(store: ts.GenericTaskStore, owner: str, task_id: str) -> str:
    backend = store.backend
    assert isinstance(backend, ts.RedisBackend)
    return backend.keys.task_key(TaskKey(owner, task_id))


def all_tasks(store: ts.GenericTaskStore, owner: str) -> list[TaskRecord]:
    """Every task of ``owner``, through the store's paging (which decodes each record)."""
    tasks: list[TaskRecord] = []
    cursor: str | None = None
    for _ in range(1000):
        page = store.list(owner_id=owner, cursor=cursor, limit=100)
        tasks.extend(page.tasks)
        cursor = page.next_cursor
        if cursor is None:
            return tasks
    raise AssertionError("listing did not end")


def wait_until(condition: Callable[[], bool], seconds: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def assert_down(server: RedisServer) -> None:
    """The server itself is gone: its process has exited and its port refuses a PING."""
    assert not server.is_running(), f"{server} still runs"
    with pytest.raises(redis.exceptions.ConnectionError), admin(server.port, timeout=1.0) as probe:
        probe.ping()


def assert_load_ran_while_down(load: Workload, server: RedisServer) -> None:
    """The load made calls (each returned or raised) while the server was down."""
    calls_at_kill = load.calls
    assert wait_until(lambda: load.calls >= calls_at_kill + 3, HANG), (
        "the load made no calls while Redis was down"
    )
    assert not server.is_running()


class Call:
    """One store call on a thread of its own, to tell a call that returned from one that hangs."""

    def __init__(self, name: str, function: Callable[[], object]) -> None:
        self.name = name
        self.error: BaseException | None = None
        self._function = function
        self._thread = threading.Thread(target=self._run, name=f"call-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._function()
        except BaseException as exc:
            self.error = exc

    def returned_within(self, seconds: float) -> bool:
        self._thread.join(max(seconds, 0.0))
        return not self._thread.is_alive()


# --- the load and its ledger ------------------------------------------------------------

DONE = "done"
"""The store reported the write done."""
UNKNOWN = "unknown"
"""StoreUnavailable with outcome_unknown=True: applied once or not at all."""
REFUSED = "refused"
"""StoreUnavailable with outcome_unknown=False: must not have been applied."""
LOST = "lost"
"""TaskNotFound for a task that the fault destroyed (only where data loss is expected)."""


@dataclass
class Ledger:
    """What the load did to one task it created, and what the store told it."""

    owner: str
    task_id: str
    result: dict[str, int]
    writes: dict[str, str] = field(default_factory=dict)
    """Variable key of each set_variables -> its outcome."""
    completion: str | None = None


class Workload:
    """A bounded load on a thread of its own: each round creates a task, sets a few
    variables (each write its own key), reads it back, lists, and completes it with a result.

    Only ``StoreUnavailable`` is expected (and ``TaskNotFound`` when ``data_may_be_lost``);
    anything else lands in ``unexpected``. After an error the load sleeps a little, so a
    dead server does not make it spin.
    """

    def __init__(
        self,
        store: ts.GenericTaskStore,
        owners: list[str],
        *,
        rounds: int = 3000,
        seconds: float = 20.0,
        writes: int = 3,
        data_may_be_lost: bool = False,
    ) -> None:
        self.store = store
        self.owners = owners
        self.rounds = rounds
        self.seconds = seconds
        self.writes = writes
        self.data_may_be_lost = data_may_be_lost
        self.ledgers: list[Ledger] = []
        self.unknown_creates = 0
        self.write_errors: list[StoreUnavailable] = []
        self.read_errors: list[StoreUnavailable] = []
        self.unexpected: list[BaseException] = []
        self.completed = 0
        self.calls = 0
        """Store calls that returned or raised."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(4 * HANG)
        assert not self._thread.is_alive(), "the load thread hangs"

    @property
    def errors(self) -> int:
        return len(self.write_errors) + len(self.read_errors)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for n in range(self.rounds):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                self._round(self.owners[n % len(self.owners)], n)
            except Exception as exc:
                self.unexpected.append(exc)
                time.sleep(0.02)

    def _round(self, owner: str, n: int) -> None:
        store = self.store
        try:
            created = store.create(METHOD, owner_id=owner)
        except StoreUnavailable as exc:
            self._write_failed(exc)
            self.unknown_creates += exc.outcome_unknown
            return
        finally:
            self.calls += 1
        task_id = created.task.task_id
        ledger = Ledger(owner, task_id, {"round": n})
        self.ledgers.append(ledger)
        for k in range(self.writes):
            key = f"w{k}"
            outcome = self._write(lambda: store.set_variables(task_id, {key: k}, owner_id=owner))  # noqa: B023
            ledger.writes[key] = outcome
            if outcome == LOST:
                return
            self._read(lambda: store.get(task_id, owner_id=owner))
        self._read(lambda: store.list(owner_id=owner, limit=10))
        ledger.completion = self._write(
            lambda: store.complete_with_result(
                task_id, "completed", None, ledger.result, owner_id=owner
            )
        )
        if ledger.completion == DONE:
            self.completed += 1

    def _write(self, call: Callable[[], object]) -> str:
        try:
            call()
        except StoreUnavailable as exc:
            self._write_failed(exc)
            return UNKNOWN if exc.outcome_unknown else REFUSED
        except TaskNotFound:
            if not self.data_may_be_lost:
                raise
            return LOST
        finally:
            self.calls += 1
        return DONE

    def _write_failed(self, exc: StoreUnavailable) -> None:
        self.write_errors.append(exc)
        time.sleep(0.02)

    def _read(self, call: Callable[[], object]) -> None:
        try:
            call()
        except StoreUnavailable as exc:
            self.read_errors.append(exc)
            time.sleep(0.02)
        except TaskNotFound:
            if not self.data_may_be_lost:
                raise
        finally:
            self.calls += 1


def check_ledger(
    store: ts.GenericTaskStore, workload: Workload, *, data_may_be_lost: bool = False
) -> int:
    """Hold what is stored against what the store told the load; return the tasks checked.

    With ``data_may_be_lost`` (no persistence, or a failover that may drop the last
    writes) a vanished task or an acknowledged write that is missing is accepted, but
    nothing may be applied twice or be half-written, and a refused write must be absent.
    """
    checked = 0
    known: set[tuple[str, str]] = set()
    for ledger in workload.ledgers:
        known.add((ledger.owner, ledger.task_id))
        try:
            record = store.get(ledger.task_id, owner_id=ledger.owner)
        except TaskNotFound:
            assert data_may_be_lost, f"task {ledger.task_id} was created but is gone"
            continue
        checked += 1
        keys = set(record.variables)
        done = {key for key, outcome in ledger.writes.items() if outcome == DONE}
        unknown = {key for key, outcome in ledger.writes.items() if outcome == UNKNOWN}
        refused = {key for key, outcome in ledger.writes.items() if outcome == REFUSED}
        if not data_may_be_lost:
            assert done <= keys, f"acknowledged writes missing: {sorted(done - keys)}"
        assert not keys & refused, f"writes reported refused were applied: {keys & refused}"
        assert keys <= done | unknown, f"writes nobody made: {sorted(keys - done - unknown)}"
        assert record.variables == {key: int(key[1:]) for key in keys}
        terminal = record.task.status.is_terminal
        # Each applied write moves the version by exactly one: create, one per key, completion.
        assert record.version == 1 + len(keys) + terminal, (
            f"version {record.version} for {len(keys)} variables (terminal: {terminal}): "
            "a write was applied twice"
        )
        if terminal:  # never half-written: the terminal status comes with its result
            assert record.task.status is TaskStatus.COMPLETED
            assert record.result == ledger.result
        else:
            assert record.result is None
        if ledger.completion == DONE and not data_may_be_lost:
            assert terminal, f"completion of {ledger.task_id} was acknowledged but is missing"
            assert store.get_result(ledger.task_id, owner_id=ledger.owner) == ledger.result
        if ledger.completion == REFUSED:
            assert not terminal, "a completion reported refused was applied"
    for owner in workload.owners:
        for record in all_tasks(store, owner):
            if (owner, record.task.task_id) in known:
                continue
            # A create of unknown outcome that did land: written once, never touched again.
            assert record.version == 1
            assert record.task.status is TaskStatus.WORKING
            assert record.variables == {}
    return checked


# --- a proxy that loses replies ---------------------------------------------------------

_INCOMPLETE = object()


def _encode_command(args: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    parts.extend(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)
    return b"".join(parts)


def applied_write(command: list[bytes], reply: object) -> bool:
    """Whether this is the reply of a create, compare-and-set or merge script that wrote."""
    if command[0].upper() != b"EVALSHA":
        return False
    if command[1].decode() == CREATE.sha:
        return reply == Code.OK
    if command[1].decode() in (COMPARE_AND_SET.sha, MERGE_VARIABLES.sha):
        return isinstance(reply, list) and len(reply) == 3 and reply[0] == Code.OK
    return False


def applied_release(command: list[bytes], reply: object) -> bool:
    """Whether this is the reply of a release script that handed the lease back."""
    return (
        command[0].upper() == b"EVALSHA"
        and command[1].decode() == RELEASE.sha
        and isinstance(reply, list)
        and reply[0] == Code.OK
    )


def last_script_loaded(command: list[bytes], reply: object) -> bool:
    """Whether this is the reply of the last SCRIPT LOAD of the backend's reload."""
    return [arg.upper() for arg in command[:2]] == [b"SCRIPT", b"LOAD"] and (
        reply == ALL_SCRIPTS[-1].sha.encode()
    )


@dataclass
class _Rule:
    matches: Callable[[list[bytes], object], bool]
    times: int
    drop: bool
    before: Callable[[], object] | None


class LossyProxy:
    """A TCP proxy on a free loopback port in front of one Redis, in lock-step.

    For each request of the client it forwards the request, reads the whole reply, and
    checks its rules: a matching rule may run a hook (as the server, with the reply not
    yet delivered) and may drop the connection instead of delivering the reply, as a
    network failure after the server executed the command would.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.dropped = 0
        self.hook_errors: list[BaseException] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._handlers: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def on_reply(
        self,
        matches: Callable[[list[bytes], object], bool],
        *,
        times: int = 1,
        drop: bool = True,
        before: Callable[[], object] | None = None,
    ) -> None:
        """For the next ``times`` replies that match: run ``before``, then drop if ``drop``."""
        with self._lock:
            self._rules.append(_Rule(matches, times, drop, before))

    def armed(self) -> int:
        """How many matches the rules still wait for."""
        with self._lock:
            return sum(rule.times for rule in self._rules)

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(HANG)
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(HANG)
        self._listener.close()
        assert not any(h.is_alive() for h in [self._acceptor, *handlers]), "proxy threads hang"

    def _accept(self) -> None:
        for _ in range(100_000):  # bounded; each turn waits up to 50 ms
            if self._stop.is_set():
                return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            handler = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._handlers.append(handler)
            handler.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(0.05)
            upstream = socket.create_connection((HOST, self._upstream_port), timeout=HANG)
            requests = hiredis.Reader(notEnoughData=_INCOMPLETE)
            for _ in range(100_000):  # bounded; each turn waits up to 50 ms
                if self._stop.is_set():
                    return
                try:
                    chunk = client.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                requests.feed(chunk)
                while (command := requests.gets()) is not _INCOMPLETE:
                    reply, raw = self._exchange(upstream, command)
                    if self._drops(command, reply):
                        return  # both connections close, the reply is lost
                    client.sendall(raw)
        except OSError:
            return  # one side went away
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    @staticmethod
    def _exchange(upstream: socket.socket, command: list[bytes]) -> tuple[object, bytes]:
        upstream.sendall(_encode_command(command))
        replies = hiredis.Reader(notEnoughData=_INCOMPLETE)
        raw = bytearray()
        for _ in range(100_000):  # bounded; each turn waits up to HANG for the server
            chunk = upstream.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            raw += chunk
            replies.feed(chunk)
            reply = replies.gets()
            if reply is not _INCOMPLETE:
                return reply, bytes(raw)
        raise ConnectionError("reply too long")

    def _drops(self, command: list[bytes], reply: object) -> bool:
        with self._lock:
            rule = next((r for r in self._rules if r.times > 0 and r.matches(command, reply)), None)
            if rule is None:
                return False
            rule.times -= 1
        if rule.before is not None:
            try:
                rule.before()
            except Exception as exc:
                self.hook_errors.append(exc)
        if rule.drop:
            self.dropped += 1
        return rule.drop


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[LossyProxy]:
    lossy = LossyProxy(server.port)
    try:
        yield lossy
    finally:
        lossy.close()
    assert lossy.hook_errors == []


# --- 1. Redis SIGKILLed and restarted ---------------------------------------------------

ALL_OPERATIONS: dict[str, Callable[[ts.GenericTaskStore, str], object]] = {
    "create": lambda s, t: s.create(METHOD, owner_id=OWNER),
    "get": lambda s, t: s.get(t, owner_id=OWNER),
    "list": lambda s, t: s.list(owner_id=OWNER),
    "update_status": lambda s, t: s.update_status(t, "input_required", owner_id=OWNER),
    "set_variables": lambda s, t: s.set_variables(t, {"probe": 1}, owner_id=OWNER),
    "set_result": lambda s, t: s.set_result(t, {"probe": 1}, owner_id=OWNER),
    "get_result": lambda s, t: s.get_result(t, owner_id=OWNER),
    "complete_with_result": lambda s, t: s.complete_with_result(
        t, "completed", None, {"probe": 1}, owner_id=OWNER
    ),
    "cancel": lambda s, t: s.cancel(t, owner_id=OWNER),
    "cleanup_expired": lambda s, t: s.cleanup_expired(),
}


@pytest.mark.redis
def test_while_redis_is_killed_every_call_fails_fast_and_after_a_restart_calls_succeed(
    server: RedisServer,
) -> None:
    with open_store(server.url) as store, open_store(server.url) as prober:
        probe_task = prober.create(METHOD, owner_id=OWNER).task.task_id
        with Workload(store, ["worker"], data_may_be_lost=True) as load:
            assert wait_until(lambda: load.completed >= 10, HANG), "the load made no progress"
            server.kill()
            assert_down(server)
            calls = [
                Call(name, functools.partial(op, prober, probe_task))
                for name, op in ALL_OPERATIONS.items()
            ]
            hung = [call.name for call in calls if not call.returned_within(HANG)]
            assert hung == [], f"calls still running {HANG} s after Redis died: {hung}"
            for call in calls:
                assert isinstance(call.error, StoreUnavailable), (call.name, call.error)
            assert_load_ran_while_down(load, server)
            server.restart()
            # The server keeps nothing on disk: what was written before the kill is gone
            # (expected here; see the next test for a server with an append-only file).
            completed_at_restart = load.completed
            assert wait_until(lambda: load.completed >= completed_at_restart + 10, HANG), (
                "the load did not recover after the restart"
            )
        assert load.unexpected == []
        with pytest.raises(TaskNotFound):
            prober.get(probe_task, owner_id=OWNER)
        for name, op in ALL_OPERATIONS.items():
            task_id = prober.create(METHOD, owner_id=OWNER).task.task_id
            if name == "get_result":
                prober.complete_with_result(task_id, "completed", None, {"r": 1}, owner_id=OWNER)
            op(prober, task_id)  # every operation works again
        # No task is half-written: every task that exists decodes, and a completed
        # one carries its result.
        assert check_ledger(store, load, data_may_be_lost=True) >= 10


@pytest.mark.redis
def test_a_write_to_a_server_that_refuses_the_connection_says_it_was_not_sent(
    server: RedisServer,
) -> None:
    with open_store(server.url) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        server.kill()
        # the first call may find its pooled connection dead after sending: unknown outcome;
        # once the pool is empty, every connect is refused and nothing leaves the process
        for _ in range(3):
            with contextlib.suppress(StoreUnavailable):
                store.set_variables(task_id, {"drain": 1}, owner_id=OWNER)
        with pytest.raises(StoreUnavailable) as refused:
            store.set_variables(task_id, {"n": 1}, owner_id=OWNER)
        assert not refused.value.outcome_unknown, refused.value
        assert "not sent: nothing was written" in str(refused.value)
        assert "may or may not" not in str(refused.value)
        with pytest.raises(StoreUnavailable) as read:
            store.get(task_id, owner_id=OWNER)
        assert not read.value.outcome_unknown


@pytest.mark.redis
def test_with_an_append_only_file_every_acknowledged_write_survives_a_kill_and_restart() -> None:
    with (
        server_with("--appendonly", "yes", "--appendfsync", "always") as durable,
        open_store(durable.url) as store,
    ):
        with Workload(store, ["worker-a", "worker-b"]) as load:
            assert wait_until(lambda: load.completed >= 20, HANG), "the load made no progress"
            durable.kill()
            assert_down(durable)
            assert_load_ran_while_down(load, durable)
            durable.restart()
            completed_at_restart = load.completed
            assert wait_until(lambda: load.completed >= completed_at_restart + 10, HANG), (
                "the load did not recover after the restart"
            )
        assert load.unexpected == []
        # Every task whose create was acknowledged exists, decodes and is whole; every
        # acknowledged write and completion is there, none refused is, none twice.
        assert check_ledger(store, load) >= 30


# --- 2. SCRIPT FLUSH --------------------------------------------------------------------


@pytest.mark.redis
def test_scripts_flushed_again_and_again_during_a_load_never_reach_the_caller(
    server: RedisServer,
) -> None:
    flushes = 100
    with admin(server.port) as control, open_store(server.url) as store:
        with Workload(store, ["worker-a", "worker-b"]) as load:
            assert wait_until(lambda: load.completed >= 1, HANG)
            loads_before = script_loads(control)
            for _ in range(flushes):
                control.script_flush()
                time.sleep(0.02)
            completed_at_last_flush = load.completed
            assert wait_until(lambda: load.completed > completed_at_last_flush, HANG)
        # The flushes did hit the store: it reloaded its scripts again and again.
        assert script_loads(control) - loads_before >= 10 * len(ALL_SCRIPTS)
        assert load.unexpected == []
        assert load.write_errors == []
        assert load.read_errors == []
        assert check_ledger(store, load) >= 10


def script_loads(control: redis.Redis) -> int:
    stats = control.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))


@pytest.mark.redis
def test_scripts_flushed_right_after_the_backend_reloaded_them_do_not_reach_the_caller(
    server: RedisServer, proxy: LossyProxy
) -> None:
    # The flush lands between the reload and the call that needed it.
    with admin(server.port) as control, open_store(proxy.url) as store:
        proxy.on_reply(last_script_loaded, drop=False, before=control.script_flush)
        try:
            created = store.create(METHOD, owner_id=OWNER)
        except redis.exceptions.RedisError as exc:
            pytest.fail(f"a raw redis-py error reached the caller: {exc!r}")
        assert proxy.armed() == 0  # the flush did happen
        assert store.get(created.task.task_id, owner_id=OWNER).version == 1


# --- 3. connections killed --------------------------------------------------------------


@pytest.mark.redis
def test_killed_connections_are_invisible_to_reads_and_never_make_a_write_land_twice(
    server: RedisServer,
) -> None:
    killed = 0
    with admin(server.port) as control, open_store(server.url) as store:
        connections_before = int(control.info("stats")["total_connections_received"])
        # Two loads on one store: their commands also share pipelined round trips.
        with Workload(store, ["worker-a"]) as one, Workload(store, ["worker-b"]) as two:
            assert wait_until(lambda: one.completed >= 1 and two.completed >= 1, HANG)
            jitter = random.Random(7)
            deadline = time.monotonic() + 3.0
            for _ in range(200):
                # At most one kill per store call (a read has read_retries attempts to
                # spare): each load finishes a call between two kills. The kill lands
                # anywhere: idle, mid-command or mid-reply.
                calls = (one.calls, two.calls)
                if time.monotonic() > deadline or not wait_until(
                    lambda: one.calls > calls[0] and two.calls > calls[1],  # noqa: B023
                    HANG,
                    0.002,
                ):
                    break
                time.sleep(jitter.uniform(0, 0.004))
                killed += int(control.client_kill_filter(_type="normal"))
            completed = (one.completed, two.completed)
            assert wait_until(
                lambda: one.completed > completed[0] and two.completed > completed[1], HANG
            )
        connections_after = int(control.info("stats")["total_connections_received"])
        # The kills did hit the store's connections, which it opened again each time.
        assert killed >= 20
        assert connections_after - connections_before >= 20
        for load in (one, two):
            assert load.unexpected == []
            assert load.read_errors == [], "a read did not recover from a killed connection"
            assert check_ledger(store, load) >= 10


# --- 4. a paused server -----------------------------------------------------------------


@pytest.mark.redis
def test_a_server_paused_past_the_socket_timeout_fails_calls_in_time_and_then_works(
    server: RedisServer,
) -> None:
    pause_ms = 3000
    with admin(server.port) as control, open_store(server.url, socket_timeout=0.5) as store:
        task = store.create(METHOD, owner_id=OWNER)
        task_id = task.task.task_id
        control.client_pause(pause_ms, all=True)
        paused_at = time.monotonic()
        read = Call("get", lambda: store.get(task_id, owner_id=OWNER))
        write = Call(
            "update_status", lambda: store.update_status(task_id, "input_required", owner_id=OWNER)
        )
        # Both must give up well before the pause ends (at pause_ms).
        limit = 0.8 * pause_ms / 1000
        assert read.returned_within(paused_at + limit - time.monotonic()), "get hangs"
        assert write.returned_within(paused_at + limit - time.monotonic()), "the write hangs"
        assert isinstance(read.error, StoreUnavailable)
        assert not read.error.outcome_unknown
        assert isinstance(write.error, StoreUnavailable)
        assert write.error.outcome_unknown  # sent, and maybe run when the pause ends
        assert control.ping()  # answered once the pause is over
        after = store.get(task_id, owner_id=OWNER)
        # The write of unknown outcome ran once or not at all.
        assert (after.task.status, after.version) in {
            (TaskStatus.WORKING, 1),
            (TaskStatus.INPUT_REQUIRED, 2),
        }
        done = store.complete_with_result(task_id, "completed", None, {"r": 1}, owner_id=OWNER)
        assert done.version == after.version + 1
        assert store.get_result(task_id, owner_id=OWNER) == {"r": 1}


# --- 5. lost replies --------------------------------------------------------------------


@pytest.mark.redis
def test_a_compare_and_set_resent_with_its_token_reports_applied_without_moving_the_version(
    server: RedisServer,
) -> None:
    with admin(server.port) as control, open_store(server.url) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        key = redis_key(store, OWNER, task_id)
        data = control.hget(key, "d")
        assert data is not None
        assert control.script_load(COMPARE_AND_SET.source) == COMPARE_AND_SET.sha
        backend = store.backend
        assert isinstance(backend, ts.RedisBackend)
        expiry = backend.keys.expiry_key(OWNER)
        # As the backend calls it: expected core version, new data, the write's (hex) token,
        # the time, no index member (not terminal).
        args = (COMPARE_AND_SET.sha, 2, key, expiry, 1, data, "a1", 1, "", 2, 0)
        first = control.evalsha(*args)
        resent = control.evalsha(*args)
        assert first[0] == resent[0] == Code.OK
        assert control.hget(key, "v") == "2"
        history = control.hget(key, "w")
        assert isinstance(history, str)
        assert history.startswith("a1:2 ")  # newest first, then the create's token
        # Another write at the same stale version is a conflict, with the current record.
        conflict = control.evalsha(COMPARE_AND_SET.sha, 2, key, expiry, 1, data, "a2", 1, "", 2, 0)
        assert conflict[0] == Code.CONFLICT
        assert control.hget(key, "v") == "2"
        assert store.get(task_id, owner_id=OWNER).version == 2


@pytest.mark.redis
def test_writes_whose_replies_were_lost_are_each_applied_exactly_once(proxy: LossyProxy) -> None:
    with open_store(proxy.url) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        outcomes: dict[int, str] = {}
        for n in range(12):
            # 0: the reply arrives; 1: lost, the resend's arrives; 2: lost on the resend too.
            proxy.on_reply(applied_write, times=n % 3)
            try:
                store.set_variables(task_id, {f"w{n}": n}, owner_id=OWNER)
                outcomes[n] = DONE
            except StoreUnavailable as exc:
                assert exc.outcome_unknown, exc
                outcomes[n] = UNKNOWN
            assert proxy.armed() == 0, "the reply was not lost as planned"
        assert outcomes == {n: UNKNOWN if n % 3 == 2 else DONE for n in range(12)}
        assert proxy.dropped == 4 * 1 + 4 * 2
        record = store.get(task_id, owner_id=OWNER)
        # Each write landed exactly once, whether its reply arrived, or was lost once or twice.
        assert record.variables == {f"w{n}": n for n in range(12)}
        assert record.version == 1 + 12


@pytest.mark.redis
def test_a_release_handing_its_attempt_back_resent_after_a_lost_reply_hands_it_back_once(
    proxy: LossyProxy,
) -> None:
    with open_store(proxy.url) as store:
        task_id = store.submit(METHOD, owner_id=OWNER, max_attempts=3).task.task_id
        first = store.claim(timeout=5)
        assert first is not None
        first.release()  # this attempt counts
        second = store.claim(timeout=5)
        assert second is not None and (second.task_id, second.attempt) == (task_id, 2)
        # The release lands, its reply is lost; the resend carries the same write token.
        proxy.on_reply(applied_release)
        second.release(count_attempt=False)
        assert proxy.dropped == 1
        record = store.get(task_id, owner_id=OWNER)
        assert record.job is not None and (record.job.state, record.job.attempt) == ("ready", 1)
        # handed back once: attempt 2 again (not 3: kept; not 1: handed back twice)
        third = store.claim(timeout=5)
        assert third is not None and (third.task_id, third.attempt) == (task_id, 2)
        assert (store.queue_stats().released, store.queue_stats().given_up) == (2, 0)


@pytest.mark.redis
def test_a_completion_whose_reply_was_lost_is_reported_done_and_applied_once(
    proxy: LossyProxy,
) -> None:
    with open_store(proxy.url) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        proxy.on_reply(applied_write)
        done = store.complete_with_result(
            task_id, "completed", "ok", {"answer": 42}, owner_id=OWNER
        )
        assert proxy.dropped == 1
        assert done.version == 2
        stored = store.get(task_id, owner_id=OWNER)
        assert (stored.task.status, stored.version) == (TaskStatus.COMPLETED, 2)
        assert store.get_result(task_id, owner_id=OWNER) == {"answer": 42}


@pytest.mark.redis
def test_a_create_whose_reply_was_lost_creates_exactly_one_task(proxy: LossyProxy) -> None:
    with open_store(proxy.url) as store:
        proxy.on_reply(applied_write)
        created = store.create(METHOD, owner_id=OWNER)
        assert proxy.dropped == 1
        proxy.on_reply(applied_write, times=2)
        with pytest.raises(StoreUnavailable) as caught:
            store.create(METHOD, owner_id=OWNER)
        assert caught.value.outcome_unknown
        assert proxy.dropped == 3
        tasks = all_tasks(store, OWNER)
        # The first create landed once; the second, of unknown outcome, landed once too.
        assert len(tasks) == 2
        assert created.task.task_id in {task.task.task_id for task in tasks}
        assert [task.version for task in tasks] == [1, 1]


@pytest.mark.redis
def test_a_write_whose_resend_is_refused_is_still_reported_of_unknown_outcome(
    server: RedisServer, proxy: LossyProxy
) -> None:
    with admin(server.port) as control, open_store(proxy.url) as store:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        # The write lands but its reply is lost; before the resend, Redis starts refusing
        # writes (here: fewer replicas than min-replicas-to-write, as in a partition).
        proxy.on_reply(applied_write, before=lambda: control.config_set("min-replicas-to-write", 1))
        with pytest.raises(StoreUnavailable) as caught:
            store.update_status(task_id, "input_required", owner_id=OWNER)
        control.config_set("min-replicas-to-write", 0)
        assert proxy.dropped == 1
        landed = store.get(task_id, owner_id=OWNER)
        assert (landed.task.status, landed.version) == (TaskStatus.INPUT_REQUIRED, 2)
        assert caught.value.outcome_unknown, (
            f"the write landed, yet the caller was told it did not: {caught.value}"
        )


@pytest.mark.redis
def test_a_status_change_whose_reply_was_lost_is_not_applied_again_after_another_write(
    server: RedisServer, proxy: LossyProxy
) -> None:
    with open_store(proxy.url) as store, open_store(server.url) as other:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        # Our move to input_required lands, its reply is lost, and before the resend
        # another worker moves the task back to working.
        proxy.on_reply(
            applied_write, before=lambda: other.update_status(task_id, "working", owner_id=OWNER)
        )
        try:
            store.update_status(task_id, "input_required", owner_id=OWNER)
        except StoreUnavailable as exc:
            assert exc.outcome_unknown
        assert proxy.dropped == 1
        final = other.get(task_id, owner_id=OWNER)
        # Two writes were made, ours and then the other worker's.
        assert (final.version, final.task.status) == (3, TaskStatus.WORKING), (
            f"version {final.version}, status {final.task.status}: our write was applied twice"
        )


@pytest.mark.redis
def test_a_completion_whose_reply_was_lost_is_not_reported_invalid_after_another_write(
    server: RedisServer, proxy: LossyProxy
) -> None:
    with open_store(proxy.url) as store, open_store(server.url) as other:
        task_id = store.create(METHOD, owner_id=OWNER).task.task_id
        # Our completion lands, its reply is lost, and before the resend another worker
        # sets a variable on the (now completed) task.
        proxy.on_reply(
            applied_write,
            before=lambda: other.set_variables(task_id, {"seen": True}, owner_id=OWNER),
        )
        try:
            store.complete_with_result(task_id, "completed", None, {"answer": 42}, owner_id=OWNER)
        except StoreUnavailable as exc:
            assert exc.outcome_unknown
        except InvalidTransition as exc:
            pytest.fail(f"our completion landed, yet the store reported {exc!r}")
        finally:
            assert proxy.dropped == 1
        assert other.get_result(task_id, owner_id=OWNER) == {"answer": 42}
        assert other.get(task_id, owner_id=OWNER).version == 3


# --- 6. cluster failover ----------------------------------------------------------------

CLUSTER_OWNERS = [f"owner-{n}" for n in range(6)]


def probe_owners(owners: list[str]) -> list[str]:
    """For each owner, another owner in the same shard (so on the same primary)."""
    keys = KeySchema("faults", 16)
    candidates = [f"probe-{n}" for n in range(1000)]
    return [
        next(c for c in candidates if keys.shard_of(c) == keys.shard_of(owner)) for owner in owners
    ]


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster(primaries=3, replicas=1) as started:
        yield started


def role(node: RedisServer) -> str:
    try:
        with admin(node.port, timeout=1.0) as control:
            return str(control.info("replication")["role"])
    except redis.exceptions.RedisError:
        return "unreachable"


def cluster_nodes(cluster: RedisCluster, asked: RedisServer | None = None) -> dict[str, Any]:
    """CLUSTER NODES as ``asked`` (else the first running node) sees the cluster now."""
    node = asked or next(node for node in cluster.nodes if node.is_running())
    with admin(node.port) as control:
        nodes: dict[str, dict[str, Any]] = control.cluster("NODES")
    return nodes


def slot_primary(nodes: dict[str, dict[str, Any]], owner: str) -> tuple[str, int]:
    """Node id and port of the primary serving ``owner``'s slot in a CLUSTER NODES reply."""
    slot = redis.crc.key_slot(KeySchema("faults", 16).task_key(TaskKey(owner, "any")).encode())
    return next(
        (entry["node_id"], int(address.rsplit(":", 1)[1]))
        for address, entry in nodes.items()
        if "master" in entry["flags"]
        and any(int(low) <= slot <= int(high) for low, high, *_ in entry["slots"])
    )


def shard_of(cluster: RedisCluster, owner: str) -> tuple[RedisServer, RedisServer]:
    """The primary holding ``owner``'s keys, and its replica, as the cluster sees them now."""
    by_port = {node.port: node for node in cluster.nodes}
    nodes = cluster_nodes(cluster)
    primary_id, primary_port = slot_primary(nodes, owner)
    replica_port = next(
        int(address.rsplit(":", 1)[1])
        for address, entry in nodes.items()
        if entry["master_id"] == primary_id
    )
    return by_port[primary_port], by_port[replica_port]


def node_flags(cluster: RedisCluster, node: RedisServer) -> list[set[str]]:
    """The flags of ``node`` in CLUSTER NODES, as each other running node sees it."""
    seen = []
    for other in cluster.nodes:
        if other.port != node.port and other.is_running():
            nodes = cluster_nodes(cluster, other)
            entry = next(e for address, e in nodes.items() if address.endswith(f":{node.port}"))
            flags = entry["flags"]
            seen.append(set(flags.split(",") if isinstance(flags, str) else flags))
    return seen


def assert_failed_over(
    cluster: RedisCluster, owner: str, old_primary: RedisServer, new_primary: RedisServer
) -> None:
    """The servers say that the fault happened: every other node marks the old primary of
    ``owner``'s slot failed, and says that its replica, not it, now serves that slot."""
    assert wait_until(
        lambda: all("fail" in flags for flags in node_flags(cluster, old_primary)), 15, 0.1
    ), f"the cluster does not mark {old_primary} failed: {node_flags(cluster, old_primary)}"
    old_id = next(
        entry["node_id"]
        for address, entry in cluster_nodes(cluster, new_primary).items()
        if address.endswith(f":{old_primary.port}")
    )
    running = [node for node in cluster.nodes if node.is_running()]

    def served_by_the_replica() -> bool:
        serving = [slot_primary(cluster_nodes(cluster, node), owner) for node in running]
        return all(node_id != old_id and port == new_primary.port for node_id, port in serving)

    assert wait_until(served_by_the_replica, 15, 0.1), (
        f"not every node says that {new_primary} serves the slot of {owner}"
    )


def one_round(store: ts.GenericTaskStore, owner: str) -> None:
    task_id = store.create(METHOD, owner_id=owner).task.task_id
    store.update_status(task_id, "input_required", owner_id=owner)
    store.set_variables(task_id, {"k": 1}, owner_id=owner)
    store.complete_with_result(task_id, "completed", None, {"r": 1}, owner_id=owner)
    assert store.get_result(task_id, owner_id=owner) == {"r": 1}
    assert store.list(owner_id=owner, limit=1).tasks


def assert_recovers(store: ts.GenericTaskStore, owners: list[str], seconds: float) -> None:
    """Within ``seconds`` a full round succeeds in the shard of every owner (failing meanwhile
    only with StoreUnavailable); from then on, every operation succeeds."""
    owners = probe_owners(owners)  # not the load's owners, whose tasks are in its ledger
    deadline = time.monotonic() + seconds
    for _ in range(1000):
        try:
            for owner in owners:
                one_round(store, owner)
            break
        except StoreUnavailable as exc:
            assert time.monotonic() < deadline, f"not recovered after {seconds} s: {exc!r}"
            time.sleep(0.1)
    for _ in range(3):
        for owner in owners:
            one_round(store, owner)


def assert_load_spanned_the_failover(load: Workload, before_failover: int) -> None:
    """The failed-over shard (that of the first owner) took writes before and after."""
    victims = [
        (n, ledger) for n, ledger in enumerate(load.ledgers) if ledger.owner == load.owners[0]
    ]
    assert any(n < before_failover and ledger.completion == DONE for n, ledger in victims)
    assert any(n >= before_failover and ledger.completion == DONE for n, ledger in victims)


@pytest.mark.cluster
def test_a_manual_failover_in_the_middle_of_a_load_is_followed_by_the_store(
    cluster: RedisCluster,
) -> None:
    primary, replica = shard_of(cluster, CLUSTER_OWNERS[0])
    seed = next(n for n in cluster.nodes if n.port not in (primary.port, replica.port))
    with open_store(seed.url) as store:
        with Workload(store, CLUSTER_OWNERS) as load:
            assert wait_until(lambda: load.completed >= 10, HANG)
            before_failover = len(load.ledgers)
            with admin(replica.port) as control:
                assert control.cluster("FAILOVER") in ("OK", True)
            assert wait_until(
                lambda: role(replica) == "master" and role(primary) == "slave", 10, 0.1
            ), "the failover did not happen"
            assert_recovers(store, CLUSTER_OWNERS, seconds=10)
            completed = load.completed
            assert wait_until(lambda: load.completed >= completed + 10, HANG)
        assert load.unexpected == []  # during the failover, only StoreUnavailable
        assert_load_spanned_the_failover(load, before_failover)
        # A manual failover loses nothing: the replica caught up before taking over.
        assert check_ledger(store, load) >= 20


@pytest.mark.cluster
def test_a_primary_killed_in_the_middle_of_a_load_is_replaced_and_the_store_follows(
    cluster: RedisCluster,
) -> None:
    primary, replica = shard_of(cluster, CLUSTER_OWNERS[0])
    seed = next(n for n in cluster.nodes if n.port not in (primary.port, replica.port))
    with open_store(seed.url) as store:
        with Workload(store, CLUSTER_OWNERS, data_may_be_lost=True) as load:
            assert wait_until(lambda: load.completed >= 10, HANG)
            before_failover = len(load.ledgers)
            primary.kill()
            assert_down(primary)
            # Node timeout 2 s: the replica is promoted a few seconds later.
            assert wait_until(lambda: role(replica) == "master", 15, 0.1), "no failover"
            assert_failed_over(cluster, CLUSTER_OWNERS[0], primary, replica)
            assert_recovers(store, CLUSTER_OWNERS, seconds=10)
            completed = load.completed
            assert wait_until(lambda: load.completed >= completed + 10, HANG)
        assert load.unexpected == []  # during the failover, only StoreUnavailable
        assert_load_spanned_the_failover(load, before_failover)
        # Replication is asynchronous: the last writes acknowledged by the killed primary
        # may be lost (WAIT guards against that), but nothing is applied twice, no refused
        # write lands and every task decodes whole.
        assert check_ledger(store, load, data_may_be_lost=True) >= 20


# --- 7. WAIT for replicas ---------------------------------------------------------------


@contextlib.contextmanager
def primary_with_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    with redis_server() as primary, admin(primary.port) as control:
        control.config_set("repl-diskless-sync-delay", 0)
        with server_with("--replicaof", HOST, str(primary.port)) as replica:

            def online() -> bool:
                slave = control.info("replication").get("slave0")
                return isinstance(slave, dict) and slave.get("state") == "online"

            def acknowledging() -> bool:
                control.set("faults:probe", 1)
                return int(control.wait(1, 1000)) == 1

            # Right after its sync a replica may take up to a second to acknowledge.
            assert wait_until(online, 10, 0.05), "the replica did not sync"
            assert wait_until(acknowledging, 5), "the replica does not acknowledge writes"
            control.delete("faults:probe")
            yield primary, replica


@pytest.mark.redis
def test_with_wait_replicas_each_write_is_on_the_replica_when_it_returns() -> None:
    with (
        primary_with_replica() as (primary, replica),
        admin(primary.port) as on_primary,
        admin(replica.port) as on_replica,
        open_store(primary.url, wait_replicas=1, wait_timeout_ms=2000) as store,
    ):
        created = store.create(METHOD, owner_id=OWNER)
        task_id = created.task.task_id
        key = redis_key(store, OWNER, task_id)
        writes: list[Callable[[], TaskRecord]] = [
            lambda: created,
            lambda: store.update_status(task_id, "input_required", "waiting", owner_id=OWNER),
            lambda: store.set_variables(task_id, {"progress": 0.5}, owner_id=OWNER),
            lambda: store.update_status(task_id, "working", owner_id=OWNER),
            lambda: store.complete_with_result(
                task_id, "completed", None, {"r": 1}, owner_id=OWNER
            ),
        ]
        for write in writes:
            record = write()
            assert on_replica.hget(key, "v") == str(record.version)
            assert on_replica.hget(key, "d") == on_primary.hget(key, "d")
        assert store.get(task_id, owner_id=OWNER).version == 5


@pytest.mark.redis
def test_with_wait_replicas_a_write_resent_after_a_lost_reply_still_waits_for_a_replica() -> None:
    with primary_with_replica() as (primary, replica):
        lossy = LossyProxy(primary.port)
        try:
            with open_store(lossy.url, wait_replicas=1, wait_timeout_ms=200) as store:
                plain_task = store.create(METHOD, owner_id=OWNER).task.task_id
                resent_task = store.create(METHOD, owner_id=OWNER).task.task_id
                os.kill(replica.pid, signal.SIGSTOP)  # the replica stops acknowledging
                try:
                    with pytest.raises(StoreUnavailable) as plain:
                        store.set_variables(plain_task, {"a": 1}, owner_id=OWNER)
                    assert plain.value.outcome_unknown
                    # Now the reply is lost: the resend finds its own token and writes
                    # nothing, on a new connection, and must still wait for the replica.
                    lossy.on_reply(applied_write)
                    with pytest.raises(StoreUnavailable) as resent:
                        store.set_variables(resent_task, {"b": 2}, owner_id=OWNER)
                    assert resent.value.outcome_unknown
                    assert lossy.dropped == 1
                finally:
                    os.kill(replica.pid, signal.SIGCONT)
                assert store.get(plain_task, owner_id=OWNER).variables == {"a": 1}
                assert store.get(resent_task, owner_id=OWNER).variables == {"b": 2}
        finally:
            lossy.close()
        assert lossy.hook_errors == []


@pytest.mark.redis
def test_with_wait_replicas_and_no_replica_a_write_is_reported_of_unknown_outcome(
    server: RedisServer,
) -> None:
    with (
        open_store(server.url, wait_replicas=1, wait_timeout_ms=100) as store,
        open_store(server.url) as plain,
    ):
        with pytest.raises(StoreUnavailable, match=r"acknowledged by only 0 of 1 replicas") as c:
            store.create(METHOD, owner_id=OWNER)
        assert c.value.outcome_unknown
        # As the message says, it was applied on the primary.
        [task] = plain.list(owner_id=OWNER).tasks
        with pytest.raises(StoreUnavailable, match=r"only 0 of 1 replicas") as c:
            store.update_status(task.task.task_id, "input_required", owner_id=OWNER)
        assert c.value.outcome_unknown
        assert plain.get(task.task.task_id, owner_id=OWNER).task.status is TaskStatus.INPUT_REQUIRED


@pytest.mark.redis
def test_with_wait_replicas_concurrent_writes_are_not_reported_done_by_a_frozen_replica() -> None:
    writers, writes = 4, 4
    outcomes: list[str] = []
    with (
        primary_with_replica() as (primary, replica),
        open_store(primary.url, wait_replicas=1, wait_timeout_ms=200) as store,
    ):
        task_ids: list[str] = []

        def create_some() -> None:
            for _ in range(writes):
                task_ids.append(store.create(METHOD, owner_id=OWNER).task.task_id)

        # Concurrent creates leave the store several pooled connections, all acknowledged.
        creators = [Call(f"create-{n}", create_some) for n in range(writers)]
        assert all(call.returned_within(HANG) and call.error is None for call in creators)
        os.kill(replica.pid, signal.SIGSTOP)  # from now on the replica acknowledges nothing
        try:
            together = threading.Barrier(writers, timeout=HANG)

            def write_some(mine: list[str]) -> None:
                for n, task_id in enumerate(mine):
                    together.wait()  # the writers' commands go out at the same moment
                    try:
                        store.set_variables(task_id, {"n": n}, owner_id=OWNER)
                        outcomes.append(DONE)
                    except StoreUnavailable as exc:
                        outcomes.append(UNKNOWN if exc.outcome_unknown else REFUSED)

            calls = [
                Call(f"write-{n}", functools.partial(write_some, task_ids[n::writers]))
                for n in range(writers)
            ]
            assert all(call.returned_within(HANG) and call.error is None for call in calls)
        finally:
            os.kill(replica.pid, signal.SIGCONT)
    assert len(outcomes) == writers * writes
    assert outcomes.count(DONE) == 0, (
        f"{outcomes.count(DONE)} writes were reported done although the only replica was "
        "frozen and acknowledged none of them"
    )
    assert set(outcomes) == {UNKNOWN}
