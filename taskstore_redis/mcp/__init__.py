"""taskstore_redis for MCP servers built on the MCP Python SDK 1.x (the ``mcp`` extra).

:class:`RedisTaskStore` is the SDK's ``TaskStore`` (``mcp.shared.experimental.tasks``)
over the async task store, so every server process sharing one Redis sees the same
tasks. ``taskstore_redis.mcp.tasks_extension`` has framework-neutral handlers for
the MCP tasks extension.
"""

from __future__ import annotations

from ._results import ResultCodec
from ._store import OwnerSource, RedisTaskStore, task_of

__all__ = ["OwnerSource", "RedisTaskStore", "ResultCodec", "task_of"]
