"""The API reference pages show every public name of the modules they cover."""

from __future__ import annotations

import re
from pathlib import Path

import taskstore_redis
import taskstore_redis.asyncio

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"


def _shown(page: str) -> set[str]:
    """The objects a page renders (its ``::: path`` lines)."""
    text = (REFERENCE / page).read_text(encoding="utf-8")
    return set(re.findall(r"^::: (\S+)$", text, re.M))


def test_the_sync_page_shows_every_public_name() -> None:
    shown = _shown("taskstore_redis.md")
    assert {f"taskstore_redis.{name}" for name in taskstore_redis.__all__} <= shown


def test_the_async_page_shows_every_name_that_is_not_the_sync_one() -> None:
    own = {
        name
        for name in taskstore_redis.asyncio.__all__
        if getattr(taskstore_redis.asyncio, name) is not getattr(taskstore_redis, name)
    }
    assert own
    assert {f"taskstore_redis.asyncio.{name}" for name in own} <= _shown("asyncio.md")


def test_the_mcp_and_testing_pages_show_their_whole_modules() -> None:
    assert {"taskstore_redis.mcp", "taskstore_redis.mcp.protocol"} <= _shown("mcp.md")
    assert "taskstore_redis.mcp1" in _shown("mcp1.md")
    assert "taskstore_redis.testing" in _shown("testing.md")


def test_the_backend_page_shows_both_backend_modules_whole() -> None:
    import taskstore_redis.asyncio.backend
    import taskstore_redis.backend

    shown = _shown("backend.md")
    for module in (taskstore_redis.backend, taskstore_redis.asyncio.backend):
        names = {name for name in module.__all__ if getattr(module, name) is not None}
        own = {
            name
            for name in names
            if module is taskstore_redis.backend
            or getattr(module, name) is not getattr(taskstore_redis.backend, name)
        }
        assert {f"{module.__name__}.{name}" for name in own} <= shown
