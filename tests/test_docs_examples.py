"""The Python examples of the README and of the documentation site run as written.

Every block fenced as ```` ```python ```` in README.md and docs/**/*.md runs, in its own
interpreter, against a throwaway Redis: it names ``redis://localhost:6379/0``, which the
test replaces with that server's URL. A block that is not meant to run (a fragment, a
sketch of a call) is fenced as ```` ```py ````: highlighted the same, never run.
The blocks on the MCP SDK 1.x (they import ``taskstore_redis.mcp1``) run in
tests/mcp1, where that SDK is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLE_URL = "redis://localhost:6379/0"


SDK_1X = "taskstore_redis.mcp1"
"""What a block on the MCP SDK 1.x imports."""


def _examples(sdk_1x: bool) -> dict[str, str]:
    """Each distinct runnable block on the SDK 1.x (or not), named by its page and number."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for page in PAGES:
        blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
        for number, block in enumerate(blocks, 1):
            if block not in seen and (SDK_1X in block) == sdk_1x:  # the README repeats a few
                seen.add(block)
                found[f"{page.relative_to(ROOT)}#{number}"] = block
    return found


EXAMPLES = _examples(sdk_1x=False)
MCP1_EXAMPLES = _examples(sdk_1x=True)
"""The blocks on the MCP SDK 1.x, run by tests/mcp1."""


def run_example(block: str, redis_url: str, folder: Path) -> None:
    """Run ``block`` in an interpreter of its own against ``redis_url``; it must succeed."""
    script = folder / "example.py"
    script.write_text(block.replace(EXAMPLE_URL, redis_url), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_every_example_names_the_url_to_replace() -> None:
    assert len(EXAMPLES) >= 3
    examples = {**EXAMPLES, **MCP1_EXAMPLES}
    assert [name for name, block in examples.items() if EXAMPLE_URL not in block] == []


@pytest.mark.redis
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_an_example_runs(name: str, redis_url: str, tmp_path: Path) -> None:
    run_example(EXAMPLES[name], redis_url, tmp_path)


def test_the_acl_page_gives_the_acl_line_that_the_acl_tests_use() -> None:
    from tests.test_acl import ACL_RULES

    expected = ACL_RULES.replace("<password>", "PASSWORD").replace("<prefix>", "taskstore")
    acl_page = (ROOT / "docs" / "operations" / "acl.md").read_text(encoding="utf-8")
    assert f"ACL SETUSER taskstore {expected}" in acl_page
