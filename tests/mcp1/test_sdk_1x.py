"""With the MCP SDK 1.x installed, taskstore_redis.mcp1 is the adapter for it."""

from __future__ import annotations

from importlib import metadata

from mcp.shared.experimental.tasks.message_queue import TaskMessageQueue
from mcp.shared.experimental.tasks.store import TaskStore

import taskstore_redis.mcp
import taskstore_redis.mcp1
from tests.test_public_api import undocumented


def test_these_tests_run_on_the_sdk_1x() -> None:
    assert metadata.version("mcp").startswith("1.")


def test_mcp1_exports_the_sdk_store_and_message_queue_documented() -> None:
    mcp1 = taskstore_redis.mcp1

    assert sorted(mcp1.__all__) == [
        "AnswerForwarder",
        "OwnerSource",
        "RedisTaskMessageQueue",
        "RedisTaskStore",
        "ResultCodec",
        "task_of",
    ]
    assert issubclass(mcp1.RedisTaskStore, TaskStore)
    assert issubclass(mcp1.RedisTaskMessageQueue, TaskMessageQueue)
    assert mcp1.OwnerSource is taskstore_redis.mcp.OwnerSource
    assert undocumented(mcp1) == []
