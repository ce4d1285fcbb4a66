"""The Python examples of the README and of the documentation site on the MCP SDK 1.x run.

They are the blocks importing ``taskstore_redis.mcp1``, which tests/test_docs_examples.py
leaves to this directory (see there how a block runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_docs_examples import MCP1_EXAMPLES, run_example


def test_the_guides_have_sdk_1x_examples() -> None:
    assert len(MCP1_EXAMPLES) >= 2


@pytest.mark.redis
@pytest.mark.parametrize("name", list(MCP1_EXAMPLES))
def test_an_sdk_1x_example_runs(name: str, redis_url: str, tmp_path: Path) -> None:
    run_example(MCP1_EXAMPLES[name], redis_url, tmp_path)
