"""taskstore_redis for MCP servers on the MCP Python SDK 1.x (the ``mcp1`` extra).

- :class:`RedisTaskStore`: the SDK's ``TaskStore`` (``mcp.shared.experimental.tasks``)
  over the async task store, so every server process sharing one Redis sees the
  same tasks.
- :class:`RedisTaskMessageQueue`: the SDK's ``TaskMessageQueue`` kept with the
  tasks, so a worker in one process can ask the client for input (elicitation,
  sampling) through whichever process serves ``tasks/result``, and gets the answer.

The framework-neutral handlers of the MCP tasks extension (SEP-2663) are
:mod:`taskstore_redis.mcp.protocol`; they need no MCP SDK.

Importing this module with another MCP SDK (2.x, say) installed, or none, raises
ImportError saying what to install.
"""

from __future__ import annotations

import re as _re
from importlib import metadata as _metadata


def _check_sdk() -> None:
    """Raise ImportError, in one line, unless the MCP SDK 1.23 or a newer 1.x is installed."""
    try:
        installed = _metadata.version("mcp")
    except _metadata.PackageNotFoundError:
        found = "no mcp"
    else:
        release = tuple(int(part) for part in _re.findall(r"\d+", installed)[:2])
        if (1, 23) <= release < (2,):
            return
        found = f"mcp {installed}"
    raise ImportError(
        f"taskstore_redis.mcp1 needs the MCP SDK 1.x (1.23 or newer): "
        f"pip install 'taskstore-redis[mcp1]' (installed: {found})"
    )


_check_sdk()

from ..mcp._owner import OwnerSource  # noqa: E402 - once the SDK is known to fit
from ._queue import AnswerForwarder, RedisTaskMessageQueue  # noqa: E402
from ._results import ResultCodec  # noqa: E402
from ._store import RedisTaskStore, task_of  # noqa: E402

__all__ = [
    "AnswerForwarder",
    "OwnerSource",
    "RedisTaskMessageQueue",
    "RedisTaskStore",
    "ResultCodec",
    "task_of",
]
