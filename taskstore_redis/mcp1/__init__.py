"""taskstore_redis for MCP servers on the MCP Python SDK 1.x (the ``mcp1`` extra).

- :class:`RedisTaskStore`: the SDK's ``TaskStore`` (``mcp.shared.experimental.tasks``)
  over the async task store, so every server process sharing one Redis sees the
  same tasks.
- :class:`RedisTaskMessageQueue`: the SDK's ``TaskMessageQueue`` kept with the
  tasks, so a worker in one process can ask the client for input (elicitation,
  sampling) through whichever process serves ``tasks/result``, and gets the answer.

The framework-neutral handlers of the MCP tasks extension (SEP-2663) are
:mod:`taskstore_redis.mcp.protocol`; they need no MCP SDK.
"""

from __future__ import annotations

from ..mcp._owner import OwnerSource
from ._queue import AnswerForwarder, RedisTaskMessageQueue
from ._results import ResultCodec
from ._store import RedisTaskStore, task_of

__all__ = [
    "AnswerForwarder",
    "OwnerSource",
    "RedisTaskMessageQueue",
    "RedisTaskStore",
    "ResultCodec",
    "task_of",
]
