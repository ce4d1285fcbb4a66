"""Running the example MCP servers and their workers in processes of their own.

What the end-to-end tests of examples/ share: a free loopback port, a script of
this tree run until the test ends (and waited for until it listens), the bearer
tokens the servers accept, the queue worker of the examples, and what Redis says
about the subscriptions a server holds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "examples" / "mcp_tasks_worker.py"
SHORT_LEASE_MS = 1_000
GUARD = 60.0
ALICE, BOB = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
TOKENS = {ALICE: "alice", BOB: "bob"}
"""The bearer tokens the servers accept (from ``tokens_env``) and the owner each stands for."""

SERVERS = [
    pytest.param("redis_url", id="redis", marks=pytest.mark.redis),
    pytest.param("cluster_url", id="cluster", marks=pytest.mark.cluster),
]
"""The fixtures naming the Redis a test runs on: standalone and cluster."""

UNUSABLE_TOKEN_MAPS = [
    pytest.param(None, id="none"),
    pytest.param({}, id="empty"),
    pytest.param({"short": "alice"}, id="short-token"),
    pytest.param({ALICE: ""}, id="empty-owner"),
    pytest.param(["not", "a", "map"], id="not-a-map"),
]
"""Token maps no server may start with (``None``: no map at all)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, ``extra`` added, with this tree first on the Python path."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return env


@contextmanager
def running(
    command: list[str], port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (a Python script of this tree) in a process of its own.

    With ``port``, returns once the process listens on it. Stopped with SIGTERM
    at the end (SIGKILL if it does not stop). ``env`` is added to the environment.
    """
    process = subprocess.Popen([sys.executable, *command], env=_env(env))
    try:
        deadline = time.monotonic() + GUARD
        while port is not None:
            assert process.poll() is None, f"{command[0]} exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{command[0]} did not start"
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def tokens_env() -> Iterator[dict[str, str]]:
    """The environment telling an example server the token map TOKENS."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokens.json"
        path.write_text(json.dumps(TOKENS), encoding="utf-8")
        yield {"MCP_EXAMPLE_TOKENS_FILE": str(path)}


def worker(redis_url: str, prefix: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """A queue worker process of the examples (a short lease, frequent sweeps)."""
    command = [str(WORKER), "--redis-url", redis_url, "--prefix", prefix]
    return running([*command, "--lease-ms", str(SHORT_LEASE_MS), "--sweep-s", "0.5"])


def subscribed_channels(redis_url: str, prefix: str) -> list[bytes]:
    """The shard channels of ``prefix`` some client subscribes to, as Redis says."""
    with redis.Redis.from_url(redis_url) as client:
        channels: list[bytes] = client.execute_command("PUBSUB", "SHARDCHANNELS", f"{{{prefix}:*")
    return channels


def assert_refuses_token_map(script: Path, tokens: Any, folder: Path) -> None:
    """``script``, given ``tokens`` as its token map, exits 2 with a one-line error."""
    env = {k: v for k, v in _env().items() if k != "MCP_EXAMPLE_TOKENS_FILE"}
    command = [sys.executable, str(script), "--port", str(free_port())]
    if tokens is not None:
        (folder / "tokens.json").write_text(json.dumps(tokens), encoding="utf-8")
        command += ["--tokens", str(folder / "tokens.json")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert ALICE not in done.stderr
