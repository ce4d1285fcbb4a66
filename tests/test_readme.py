"""The Python examples of the README run as written (against a throwaway Redis)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
README_URL = "redis://localhost:6379/0"


def test_the_readme_has_examples_that_name_the_url_to_replace() -> None:
    assert len(EXAMPLES) >= 3
    assert all(README_URL in example for example in EXAMPLES)


@pytest.mark.redis
@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_a_readme_example_runs(number: int, redis_url: str, tmp_path: Path) -> None:
    script = tmp_path / f"example_{number}.py"
    script.write_text(EXAMPLES[number].replace(README_URL, redis_url), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_readme_gives_the_acl_line_that_the_acl_tests_use() -> None:
    from tests.test_acl import ACL_RULES

    expected = ACL_RULES.replace("<password>", "PASSWORD").replace("<prefix>", "taskstore")
    assert f"ACL SETUSER taskstore {expected}" in README.read_text(encoding="utf-8")
