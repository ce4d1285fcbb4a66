"""taskstore_redis for MCP servers: the MCP Python SDK 1.x store and the tasks extension.

- :class:`RedisTaskStore` (needs the ``mcp`` extra): the SDK's ``TaskStore``
  (``mcp.shared.experimental.tasks``) over the async task store, so every server
  process sharing one Redis sees the same tasks.
- :class:`RedisTaskMessageQueue` (needs the ``mcp`` extra): the SDK's
  ``TaskMessageQueue`` kept with the tasks, so a worker in one process can ask the
  client for input (elicitation, sampling) through whichever process serves
  ``tasks/result``, and gets the answer.
- :mod:`taskstore_redis.mcp.protocol`: framework-neutral handlers for the
  MCP tasks extension (SEP-2663); it needs no MCP SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._owner import OwnerSource

if TYPE_CHECKING:
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

_NEEDS_SDK = {
    "RedisTaskStore": "_store",
    "task_of": "_store",
    "ResultCodec": "_results",
    "RedisTaskMessageQueue": "_queue",
    "AnswerForwarder": "_queue",
}


def __getattr__(name: str) -> Any:
    """Import what needs the MCP SDK only when it is asked for."""
    module = _NEEDS_SDK.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
