"""``taskstore-redis doctor``: whether the store can work on this server, as this user.

It asks nothing a least-privilege user (the ACL line of docs/operations/acl.md) may not
ask, and writes no key. It checks the version and mode (``HELLO``), then tries each
command the store sends (``HGETALL``, ``SCRIPT LOAD`` of every script,
``EVALSHA``, and ``INFO`` and ``WAIT``, which only some setups need). The
commands the scripts call run with the caller's permissions: a small probe
script asks ``redis.acl_check_cmd`` about each of them, on a key of the store's
prefix, without running any. Each missing permission is reported by command.
"""

from __future__ import annotations

import argparse
import re
import statistics
import textwrap
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.exceptions
from rich.console import Console

from .._core import shown
from .._core.backend_types import TaskKey
from .._core.shown import scrub
from .._redis import guard
from .._redis.keys import KeySchema
from .._redis.scripts import ALL_SCRIPTS, Script
from ._connect import probe
from ._exit import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, CliError

_OWNER = "taskstore-doctor"
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
_PINGS = 20
_WIDTH = 80
_CALL = re.compile(r"""redis\.p?call\(\s*['"]([A-Za-z]+)['"]""")
_PROBE = "return redis.acl_check_cmd(unpack(ARGV)) and 1 or 0"
"""Whether the caller may run the command in ARGV (on the key in it); runs nothing."""

_SAMPLE_ARGS: dict[str, tuple[str, ...]] = {
    "HGET": ("v",),
    "HMGET": ("v", "d"),
    "HDEL": ("v",),
    "HINCRBY": ("v", "1"),
    "HSTRLEN": ("v",),
    "HSET": ("v", "1"),
    "HSETNX": ("v", "1"),
    "PEXPIREAT": ("1",),
    "ZADD": ("0", "m"),
    "ZRANGE": ("0", "0"),
    "ZRANGEBYSCORE": ("0", "1"),
    "ZREM": ("m",),
    "ZCOUNT": ("0", "1"),
}
"""Arguments after the key that make a well-formed call of each command the scripts use."""

_OPTIONAL = {
    "INFO": "only to detect cluster mode; or pass cluster=",
    "WAIT": "only with wait_replicas",
    "SSUBSCRIBE": "only for wait and wait_for_result",
    "SUNSUBSCRIBE": "only for wait and wait_for_result",
    "PING": "only for wait and wait_for_result",
}
_WAITING = (("SSUBSCRIBE", True), ("SUNSUBSCRIBE", True), ("PING", False))
"""What the change subscription sends (on the task's channel, or none), outside the scripts."""


def commands_in(lua: str) -> list[str]:
    """The commands some Lua calls, upper case, in order of first use."""
    return list(dict.fromkeys(name.upper() for name in _CALL.findall(lua)))


def script_commands(script: Script) -> list[str]:
    """The commands a script calls, itself or in the helpers it includes."""
    return commands_in(script.source)


class _Report:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.denied: list[str] = []
        self.problems = 0

    def line(self, label: str, text: str) -> None:
        lead = f"{label:<12} "
        wrapped = textwrap.fill(
            shown.printable(text),
            _WIDTH,
            initial_indent=lead,
            subsequent_indent=" " * len(lead),
            break_on_hyphens=False,
        )
        self.console.print(wrapped, markup=False, soft_wrap=True)

    def problem(self, label: str, text: str) -> None:
        self.problems += 1
        self.line(label, text)

    def permission(self, command: str, allowed: bool, used_by: str) -> None:
        if allowed:
            self.line("allowed", f"{command} ({used_by})")
        elif command in _OPTIONAL:
            self.line("missing", f"{command} ({_OPTIONAL[command]})")
        else:
            self.denied.append(command)
            self.problem("DENIED", f"{command} ({used_by})")


def _try(call: Callable[[], object]) -> tuple[bool, object]:
    """Run ``call``; (False, the error) on a permission refusal, (True, the reply) else."""
    try:
        return True, call()
    except redis.exceptions.NoPermissionError as exc:
        return False, exc


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Check the server at ``url`` for the store; return the exit status."""
    assert url is not None  # doctor always works on a server
    hello = probe(url)
    version = str(hello.get("version", "?"))
    cluster = hello.get("mode") == "cluster"
    report = _Report(console)
    user = urlsplit(url).username or "default"
    name = str(hello.get("server", "redis")).capitalize()  # Redis, or Valkey
    report.line("server", f"{name} {version}, {'cluster' if cluster else 'standalone'}")
    report.line("user", user)
    numbers = [int(part) for part in version.split(".")[:2] if part.isdigit()]
    if len(numbers) < 2 or tuple(numbers) < (7, 0):  # no HELLO reply: before Redis 6
        report.problem("version", "needs Redis >= 7.0 (script flags, ZRANGE BYLEX REV)")
    keys = KeySchema(args.prefix)
    key = keys.task_key(TaskKey(_OWNER, "probe"))
    client: Any = (
        redis.RedisCluster.from_url(url, **_TIMEOUTS)
        if cluster
        else redis.Redis.from_url(url, **_TIMEOUTS)
    )
    try:
        _check(report, client, key, cluster)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        lost = scrub(str(exc), [url])
        raise CliError(f"lost Redis at {shown.url(url)}: {lost}", EXIT_UNREACHABLE) from None
    except redis.exceptions.RedisError as exc:
        answer = scrub(str(exc), [url])
        raise CliError(f"Redis at {shown.url(url)} answered {answer}", EXIT_FAILED) from None
    finally:
        client.close()
    if report.denied:
        grants = " ".join(f"+{command.lower()}" for command in report.denied)
        report.line("to grant", f"ACL SETUSER {user} {grants}")
    if report.problems:
        console.print("problems found", style="red")
        return EXIT_FAILED
    console.print("healthy", style="green")
    return EXIT_OK


def _check(report: _Report, client: Any, key: str, cluster: bool) -> None:
    allowed, _ = _try(lambda: client.hgetall(key))
    report.permission("HGETALL", allowed, "get")
    allowed, _ = _try(lambda: client.info("cluster"))
    report.permission("INFO", allowed, "detects cluster mode")
    info_allowed = allowed
    if info_allowed:
        _eviction(report, client, cluster)
    if not cluster:
        allowed, _ = _try(lambda: client.execute_command("WAIT", 0, 0))
        report.permission("WAIT", allowed, "wait_replicas")
    loadable = True
    for script in ALL_SCRIPTS:
        loadable, sha = _try(partial(client.script_load, script.source))
        if not loadable:
            break
        if sha != script.sha:
            report.problem("script", f"{script.name}: the server's SHA differs from the file's")
    report.permission("SCRIPT LOAD", loadable, "after NOSCRIPT")
    if not loadable:
        report.problem("not checked", "EVALSHA and the scripts' commands need SCRIPT LOAD")
        return
    report.line("scripts", "loadable: " + ", ".join(script.name for script in ALL_SCRIPTS))
    probe_sha = client.script_load(_PROBE)
    users: dict[str, list[str]] = {}
    for script in ALL_SCRIPTS:
        for command in script_commands(script):
            users.setdefault(command, []).append(script.name)
    allowed, _ = _try(lambda: client.evalsha(probe_sha, 1, key, "HMGET", key, "v"))
    report.permission("EVALSHA", allowed, "every write and list")
    if not allowed:
        report.problem("not checked", "the scripts' commands, without EVALSHA")
        return
    for command, names in users.items():
        words = (command, key, *_SAMPLE_ARGS.get(command, ()))
        verdict = client.evalsha(probe_sha, 1, key, *words)
        report.permission(command, verdict == 1, "in " + ", ".join(names))
    for command, on_channel in _WAITING:
        words = (command, key) if on_channel else (command,)
        verdict = client.evalsha(probe_sha, 1, key, *words)
        report.permission(command, verdict == 1, "the change subscription")
    if info_allowed:
        # CONFIG only where the user may (asked without running it), so nothing is refused
        may_config = client.evalsha(probe_sha, 1, key, "CONFIG", "GET", "save") == 1
        _durability(report, client, cluster, may_config)
    _round_trip(report, client, key)


def per_node(client: Any, cluster: bool, section: str) -> dict[str, dict[str, Any]]:
    """``INFO <section>`` of the server, or of every primary of a cluster, by node name."""
    if not cluster:
        return {guard.standalone_node(client): client.info(section)}
    replies: dict[str, Any] = client.info(section, target_nodes=client.PRIMARIES)
    names = [node.name for node in client.get_primaries()]
    if len(names) == 1 and not all(name in replies for name in names):
        return {names[0]: replies}  # one primary: its reply as it is
    return replies


def _eviction(report: _Report, client: Any, cluster: bool) -> None:
    """Each node's maxmemory-policy: anything but noeviction may lose tasks silently."""
    for node, info in sorted(per_node(client, cluster, "memory").items()):
        policy = guard.policy_of(info)
        risk = guard.eviction_risk(policy)
        if risk is None:
            report.line("eviction", f"{node}: maxmemory-policy {policy}")
        else:
            report.problem("EVICTION", f"{node}: {risk}")


def _config(client: Any, node: str, cluster: bool, name: str, allowed: bool) -> str | None:
    """``CONFIG GET name`` on one node, or None where CONFIG is not allowed."""
    if not allowed:
        return None
    try:
        if cluster:
            reply = client.config_get(name, target_nodes=client.get_node(node_name=node))
        else:
            reply = client.config_get(name)
    except redis.exceptions.ResponseError:  # NOPERM, or CONFIG renamed away
        return None
    value = reply.get(name, reply.get(name.encode()))
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


_Facts = list[tuple[str, str]]
"""Lines of the report: (label, text), label ``durability`` for a fact, ``advice`` for advice."""


_KEEP_EVERY_WRITE = "appendonly yes and appendfsync always keep every acknowledged write"


def _persistence(info: dict[str, Any], appendfsync: str | None, save: str | None) -> _Facts:
    """What a node keeps across a restart, and advice against the docs' "Durability"."""
    if int(info.get("aof_enabled", 0)):
        facts = [("durability", f"AOF on, appendfsync {appendfsync or '? (CONFIG not allowed)'}")]
        if appendfsync not in ("always", None):
            lost = "a crash loses the writes of the last second at most"
            facts.append(("advice", f"{lost}; appendfsync always keeps every acknowledged write"))
        return facts
    if save is None:
        snapshots = "unknown (CONFIG not allowed)"
    else:
        snapshots = f"(save {save!r})" if save else "off"
    lost = "every task" if save == "" else "the tasks written since the last snapshot"
    return [
        ("durability", f"AOF off, RDB snapshots {snapshots}"),
        ("advice", f"a restart loses {lost}; {_KEEP_EVERY_WRITE}"),
    ]


def _replication(info: dict[str, Any], min_replicas: str | None, cluster: bool) -> _Facts:
    """Replicas of a primary, min-replicas-to-write, and advice against the docs' "Durability"."""
    replicas = int(info.get("connected_slaves", 0))
    role = str(info.get("role", "?"))
    minimum = "?" if min_replicas is None else min_replicas
    facts = [("durability", f"role {role}, {replicas} replicas, min-replicas-to-write {minimum}")]
    if role == "master" and replicas == 0:
        facts.append(("advice", "no replica: a lost server loses its tasks"))
    elif role == "master" and min_replicas in ("0", None):
        fix = "min-replicas-to-write" if cluster else "wait_replicas=N, or min-replicas-to-write"
        facts.append(
            (
                "advice",
                "replication is asynchronous: a failover can lose the writes its replicas "
                f"had not received; see docs/operations/durability.md ({fix})",
            )
        )
    return facts


def _durability(report: _Report, client: Any, cluster: bool, may_config: bool) -> None:
    """Persistence and replication of each node, against what the docs' "Durability" says."""
    persistence = per_node(client, cluster, "persistence")
    replication = per_node(client, cluster, "replication")
    for node in sorted(persistence):
        facts = _persistence(
            persistence[node],
            _config(client, node, cluster, "appendfsync", may_config),
            _config(client, node, cluster, "save", may_config),
        )
        facts += _replication(
            replication.get(node, {}),
            _config(client, node, cluster, "min-replicas-to-write", may_config),
            cluster,
        )
        for label, text in facts:
            report.line(label, f"{node}: {text}")


def _round_trip(report: _Report, client: Any, key: str) -> None:
    samples = []
    for _ in range(_PINGS):
        start = time.perf_counter()
        client.hmget(key, ["v"])
        samples.append((time.perf_counter() - start) * 1000)
    report.line("round trip", f"p50 {statistics.median(samples):.3f} ms over {_PINGS} HMGETs")
