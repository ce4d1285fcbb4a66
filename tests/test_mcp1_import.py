"""The MCP SDK 1.x adapter is taskstore_redis.mcp1, the ``mcp1`` extra, and says so.

Asked for in taskstore_redis.mcp, its names say where they went; imported with
the SDK 2.x installed (this suite's ``test`` extra) or with no MCP SDK at all,
taskstore_redis.mcp1 says, in one line, what to install. The SDK is never faked:
this environment's own SDK 2.x, and the same environment without the SDK.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import taskstore_redis.mcp

ROOT = Path(__file__).resolve().parent.parent
MOVED = ["AnswerForwarder", "RedisTaskMessageQueue", "RedisTaskStore", "ResultCodec", "task_of"]
NEEDS = (
    "taskstore_redis.mcp1 needs the MCP SDK 1.x (1.23 or newer): "
    "pip install 'taskstore-redis[mcp1]' (installed: {})"
)


@pytest.mark.parametrize("name", MOVED)
def test_an_sdk_1x_name_asked_of_taskstore_redis_mcp_says_where_it_moved(name: str) -> None:
    with pytest.raises(AttributeError) as raised:
        getattr(taskstore_redis.mcp, name)

    assert str(raised.value) == (
        f"taskstore_redis.mcp.{name} moved to taskstore_redis.mcp1 (the `mcp1` extra, MCP SDK 1.x)"
    )
    assert name not in taskstore_redis.mcp.__all__
    assert not hasattr(taskstore_redis.mcp, name)


def test_any_other_missing_name_of_taskstore_redis_mcp_is_the_usual_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"^module 'taskstore_redis.mcp' has no attribute"):
        taskstore_redis.mcp.RedisTaskQueue  # noqa: B018


def test_importing_mcp1_with_the_sdk_2x_says_which_extra_in_one_line() -> None:
    installed = metadata.version("mcp")
    assert installed.startswith("2."), f"this suite's `test` extra has the SDK 2.x, not {installed}"

    with pytest.raises(ImportError) as raised:
        importlib.import_module("taskstore_redis.mcp1")

    assert str(raised.value) == NEEDS.format(f"mcp {installed}")
    assert "taskstore_redis.mcp1" not in sys.modules


def _import_mcp1_with(site: Path) -> str:
    """The last line ``import taskstore_redis.mcp1`` writes in a fresh interpreter on ``site``."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", "import taskstore_redis.mcp1"],
        env={"PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr.splitlines()[-1]


def test_importing_mcp1_without_any_mcp_sdk_says_which_extra_in_one_line(tmp_path: Path) -> None:
    # This environment's packages, alone on the path, without the MCP SDK (its package and
    # its metadata); with them, the same interpreter finds the SDK 2.x.
    site = Path(str(metadata.distribution("mcp").locate_file("")))
    without = tmp_path / "site-packages"
    without.mkdir()
    for entry in site.iterdir():
        if not re.fullmatch(r"mcp(-[^-]+\.dist-info)?", entry.name):
            (without / entry.name).symlink_to(entry)

    assert _import_mcp1_with(without) == "ImportError: " + NEEDS.format("no mcp")
    assert _import_mcp1_with(site) == "ImportError: " + NEEDS.format(
        f"mcp {metadata.version('mcp')}"
    )
