"""Record the commands that clients send to a Redis server, through MONITOR.

Used by the cost tests to count round trips::

    with monitored(server.url) as log:
        store.get(task_id, owner_id=owner)
        assert log.commands == ["HMGET"]

A dedicated connection runs MONITOR in a background thread. Only top-level
commands are recorded: the commands a Lua script runs (MONITOR shows them with
``[<db> lua]`` as the client, e.g. ``1795664128.847096 [0 lua] "GET" "a"`` on
Redis 7.0) are left out, and so is the traffic of the log's own connections.
Administrative commands (CONFIG, ...) never appear: MONITOR does not show them.

MONITOR output arrives asynchronously, so before every read of ``commands`` the
log sends ``ECHO <uuid>`` from a connection of its own and waits until that
marker shows up: the server handles commands one at a time, so by then every
command that was answered before the read has been seen.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import redis

_SUBCOMMAND_CONTAINERS = frozenset(
    {"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "MEMORY", "OBJECT", "SCRIPT"}
)
"""Commands recorded with their subcommand, as in ``SCRIPT LOAD``."""

_POLL_SECONDS = 0.05


class MonitorError(RuntimeError):
    """The monitor failed, or did not see the sync marker in time."""


def _name_of(command: str) -> str:
    """The command name of a monitored command line: ``SCRIPT LOAD``, ``EVALSHA``..."""
    words = command.split(" ", 2)
    name = words[0].upper()
    if name in _SUBCOMMAND_CONTAINERS and len(words) > 1:
        return f"{name} {words[1].upper()}"
    return name


class CommandLog:
    """The top-level commands a Redis server received while the log was running.

    Start it with ``with CommandLog(url) as log:`` (or :func:`monitored`).
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        """Prepare a log of the server at ``url``; ``timeout`` bounds each sync."""
        self._url = url
        self._timeout = timeout
        self._lock = threading.Condition()
        self._names: list[str] = []
        self._lines: list[str] = []
        self._seen_markers: set[str] = set()
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: Any = None  # a redis.client.Monitor; redis-py leaves it untyped
        self._monitor_client: redis.Redis | None = None
        self._marker_client: redis.Redis | None = None
        self._own_addresses: frozenset[str] = frozenset()

    # --- the log ----------------------------------------------------------------------

    @property
    def commands(self) -> list[str]:
        """Upper-case names of the commands seen so far, oldest first (syncs first)."""
        self.sync()
        with self._lock:
            return list(self._names)

    @property
    def lines(self) -> list[str]:
        """The full monitored lines behind :attr:`commands`, for failure messages (syncs)."""
        self.sync()
        with self._lock:
            return list(self._lines)

    def reset(self) -> None:
        """Forget everything seen so far (after a sync, so nothing older arrives later)."""
        self.sync()
        with self._lock:
            self._names.clear()
            self._lines.clear()

    def sync(self) -> None:
        """Wait until every command answered before this call has been seen.

        Raises:
            MonitorError: the marker did not show up within the timeout, or the
                monitor thread failed.

        """
        if self._marker_client is None:
            raise MonitorError("the command log is not running")
        marker = uuid.uuid4().hex
        self._marker_client.echo(marker)
        with self._lock:
            arrived = self._lock.wait_for(
                lambda: marker in self._seen_markers or self._error is not None,
                timeout=self._timeout,
            )
            self._raise_if_failed()
            if not arrived:
                raise MonitorError(f"MONITOR did not show ECHO {marker} within {self._timeout} s")
            self._seen_markers.discard(marker)

    # --- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        """Start monitoring; commands sent after this returns are recorded."""
        if self._thread is not None:
            raise MonitorError("the command log is already running")
        # One connection only, so CLIENT INFO describes the very connection MONITOR uses.
        monitor_client = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(self._url, max_connections=1)
        )
        marker_client = redis.Redis.from_url(self._url, single_connection_client=True)
        self._monitor_client, self._marker_client = monitor_client, marker_client
        try:
            self._own_addresses = frozenset(
                {_address_of(monitor_client), _address_of(marker_client)}
            )
            untyped: Any = monitor_client  # redis-py leaves monitor() untyped
            monitor = untyped.monitor()
            monitor.__enter__()  # sends MONITOR and waits for its OK
            self._monitor = monitor
        except BaseException:
            self._close_clients()
            raise
        self._thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop monitoring and close the log's connections; re-raise a failure of the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout)
            self._thread = None
        if self._monitor is not None:
            self._monitor.__exit__(None, None, None)
            self._monitor = None
        self._close_clients()
        with self._lock:
            self._raise_if_failed()

    def __enter__(self) -> CommandLog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals --------------------------------------------------------------------

    def _run(self) -> None:
        monitor = self._monitor
        try:
            while not self._stopping.is_set():
                if not monitor.connection.can_read(timeout=_POLL_SECONDS):
                    continue
                self._record(monitor.next_command())
        except BaseException as exc:  # reported to the test thread by sync() and stop()
            with self._lock:
                self._error = exc
                self._lock.notify_all()

    def _record(self, entry: dict[str, Any] | None) -> None:
        if entry is None or entry["client_type"] == "lua":
            return  # a command run by a script, not sent by a client
        client = f"{entry['client_address']}:{entry['client_port']}"
        command: str = entry["command"]
        with self._lock:
            if client in self._own_addresses:
                name, _, argument = command.partition(" ")
                if name.upper() == "ECHO":
                    self._seen_markers.add(argument)
                    self._lock.notify_all()
                return
            self._names.append(_name_of(command))
            self._lines.append(command)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise MonitorError(f"the monitor thread failed: {self._error!r}") from self._error

    def _close_clients(self) -> None:
        for client in (self._monitor_client, self._marker_client):
            if client is not None:
                client.close()
                client.connection_pool.disconnect()
        self._monitor_client = self._marker_client = None


def _address_of(client: redis.Redis) -> str:
    """The ``host:port`` the server sees for the client's connection."""
    info = client.client_info()
    return str(info["addr"])


@contextmanager
def monitored(url: str, *, timeout: float = 5.0) -> Iterator[CommandLog]:
    """Record the top-level commands the server at ``url`` receives inside the block."""
    with CommandLog(url, timeout=timeout) as log:
        yield log
