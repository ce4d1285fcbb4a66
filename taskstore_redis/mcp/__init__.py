"""taskstore_redis for MCP servers: the tasks extension (SEP-2663).

- :mod:`taskstore_redis.mcp.protocol`: framework-neutral handlers for the
  MCP tasks extension (SEP-2663); it needs no MCP SDK.

The MCP Python SDK 1.x store and message queue (``RedisTaskStore``,
``RedisTaskMessageQueue``) are :mod:`taskstore_redis.mcp1`, the ``mcp1`` extra.
"""

from __future__ import annotations

from typing import Any

from ._owner import OwnerSource

__all__ = ["OwnerSource"]

_MOVED_TO_MCP1 = frozenset(
    {"AnswerForwarder", "RedisTaskMessageQueue", "RedisTaskStore", "ResultCodec", "task_of"}
)
"""The MCP SDK 1.x names that were here, now in taskstore_redis.mcp1."""


def __getattr__(name: str) -> Any:
    """Say where the MCP SDK 1.x names went."""
    if name in _MOVED_TO_MCP1:
        raise AttributeError(
            f"{__name__}.{name} moved to taskstore_redis.mcp1 (the `mcp1` extra, MCP SDK 1.x)",
            name=name,
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}", name=name)
