"""taskstore_redis for MCP servers and clients on the MCP Python SDK 2.x (the ``mcp`` extra).

- :class:`TasksExtension`: the tasks extension (SEP-2663) as an SDK 2.x ``Extension``:
  ``MCPServer(extensions=[TasksExtension(store)])``. Task tools run on queue workers
  in any process sharing the store; ``tasks/get``, ``tasks/update`` and
  ``tasks/cancel`` are served from any process; :meth:`TasksExtension.listen` sends
  ``notifications/tasks`` on ``subscriptions/listen``.
- :class:`TaskContext`: what a task tool sees while it runs (progress, input, cancel).
- :class:`TasksClientExtension`: the client half, for the SDK 2.x ``Client``: a tasked
  ``tools/call`` resolves to its result (``notifications/tasks``, else polling).
- :class:`RedisSubscriptionBus`: the SDK's subscription bus across replicas, on Redis.
- :mod:`taskstore_redis.mcp.protocol`: the framework-neutral handlers underneath; it
  needs no MCP SDK.

The SDK 1.x adapter is :mod:`taskstore_redis.mcp1` (the ``mcp1`` extra).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._owner import OwnerSource

if TYPE_CHECKING:
    from ._bus import RedisSubscriptionBus
    from ._client import (
        CreateTaskResult,
        TaskCallError,
        TaskCancelled,
        TaskFailed,
        TaskHandle,
        TaskInputError,
        TaskLost,
        TaskNotCreated,
        TasksClientExtension,
        TaskState,
        TaskTimeout,
    )
    from ._context import InputUnavailable, TaskContext
    from ._seal import Sealer
    from ._server import TasksExtension, TaskSupport, TaskTools, declared_tasks, principal_owner

__all__ = [
    "CreateTaskResult",
    "InputUnavailable",
    "OwnerSource",
    "RedisSubscriptionBus",
    "Sealer",
    "TaskCallError",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskHandle",
    "TaskInputError",
    "TaskLost",
    "TaskNotCreated",
    "TaskState",
    "TaskSupport",
    "TaskTimeout",
    "TaskTools",
    "TasksClientExtension",
    "TasksExtension",
    "declared_tasks",
    "principal_owner",
]

_NEEDS_SDK = {
    "TasksClientExtension": "_client",
    "TaskHandle": "_client",
    "TaskState": "_client",
    "CreateTaskResult": "_client",
    "TaskCallError": "_client",
    "TaskFailed": "_client",
    "TaskCancelled": "_client",
    "TaskLost": "_client",
    "TaskInputError": "_client",
    "TaskTimeout": "_client",
    "TaskNotCreated": "_client",
    "InputUnavailable": "_context",
    "TaskContext": "_context",
    "RedisSubscriptionBus": "_bus",
    "Sealer": "_seal",
    "TaskSupport": "_server",
    "TasksExtension": "_server",
    "TaskTools": "_server",
    "declared_tasks": "_server",
    "principal_owner": "_server",
}


def _check_sdk() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("mcp")
    except PackageNotFoundError:
        installed = None
    if installed is None or int(installed.split(".")[0]) < 2:
        found = "not installed" if installed is None else f"installed: mcp {installed}"
        raise ImportError(
            "taskstore_redis.mcp needs the MCP SDK 2.x: "
            f"pip install 'taskstore-redis[mcp]' ({found}; the SDK 1.x adapter is "
            "taskstore_redis.mcp1)"
        )


_MOVED_TO_MCP1 = frozenset(
    {"AnswerForwarder", "RedisTaskMessageQueue", "RedisTaskStore", "ResultCodec", "task_of"}
)
"""The MCP SDK 1.x names that were here, now in taskstore_redis.mcp1."""


def __getattr__(name: str) -> Any:
    """Import what needs the MCP SDK only when it is asked for; say where 1.x names went."""
    if name in _MOVED_TO_MCP1:
        raise AttributeError(
            f"{__name__}.{name} moved to taskstore_redis.mcp1 (the `mcp1` extra, MCP SDK 1.x)",
            name=name,
        )
    module = _NEEDS_SDK.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}", name=name)
    _check_sdk()
    return getattr(import_module(f"{__name__}.{module}"), name)
