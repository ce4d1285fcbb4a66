"""The configuration guard: a server that may evict keys loses tasks silently.

Tasks carry TTLs, so a ``volatile-*`` eviction policy picks them first when the
server is full, and an ``allkeys-*`` one picks them like any key: a task, its
index entry or its quota count vanishes without an error. Only ``noeviction``
makes a full server refuse writes instead (``StoreUnavailable``, nothing written).

The policy is read with ``INFO memory`` (allowed where ``CONFIG`` is not), once
per node and process: the backend asks on its first connection, and again only
for nodes it has not seen (after a failover, say). A node that is not on
``noeviction`` is logged once per process as a warning; with
``StoreConfig.require_noeviction`` the backend refuses to work instead
(:class:`ServerMisconfigured`). ``taskstore-redis doctor`` reports the same words.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from .._core.errors import ServerMisconfigured
from .._core.log import REDIS

NOEVICTION = "noeviction"
UNREADABLE = ""
"""The policy noted for a node whose ``INFO memory`` was refused (ACL without ``+info``)."""

_lock = threading.Lock()
_policies: dict[tuple[int, str], str] = {}
"""(process id, node) -> the policy read there; a forked child starts afresh."""


def eviction_risk(policy: str) -> str | None:
    """What an eviction policy risks, with the fix; None for ``noeviction``."""
    if policy == NOEVICTION:
        return None
    return (
        f"maxmemory-policy is {policy}: tasks carry TTLs, so volatile-* policies evict them "
        "first, silently (allkeys-* policies evict them like any key); set "
        "maxmemory-policy noeviction, so a full server refuses writes instead"
    )


def standalone_node(client: Any) -> str:
    """How a standalone client's server is named in logs: ``host:port``, or its socket path."""
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")


def policy_of(info: Mapping[str, Any]) -> str:
    """The eviction policy in an ``INFO memory`` reply."""
    value = info.get("maxmemory_policy", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def unchecked(nodes: list[str]) -> list[str]:
    """The nodes whose policy this process has not read yet."""
    pid = os.getpid()
    with _lock:
        return [node for node in nodes if (pid, node) not in _policies]


def note(node: str, policy: str) -> None:
    """Remember ``node``'s policy (``UNREADABLE`` if refused); log a risk once per process."""
    key = (os.getpid(), node)
    with _lock:
        if key in _policies:
            return
        _policies[key] = policy
    if policy == UNREADABLE:
        REDIS.info(
            "Redis at %s: could not read maxmemory-policy (INFO refused); "
            "the eviction policy is unchecked",
            node,
        )
        return
    risk = eviction_risk(policy)
    if risk is not None:
        REDIS.warning("Redis at %s: %s", node, risk)


def refuse_unless_noeviction(nodes: list[str]) -> None:
    """Raise ServerMisconfigured if a node's policy is known not to be, or unknown to be, safe."""
    pid = os.getpid()
    with _lock:
        found = [(node, _policies.get((pid, node), UNREADABLE)) for node in nodes]
    for node, policy in found:
        if policy == UNREADABLE:
            raise ServerMisconfigured(
                f"Redis at {node}: could not read maxmemory-policy (grant +info), and "
                "StoreConfig.require_noeviction asks for noeviction; nothing was sent",
                node=node,
                setting="maxmemory-policy",
                value=None,
            )
        risk = eviction_risk(policy)
        if risk is not None:
            raise ServerMisconfigured(
                f"Redis at {node}: {risk}; StoreConfig.require_noeviction refuses to work "
                "on it; nothing was sent",
                node=node,
                setting="maxmemory-policy",
                value=policy,
            )
