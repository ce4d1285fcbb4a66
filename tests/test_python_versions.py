"""The Python versions the package claims are the ones CI runs the tests on."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def claimed() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: 3."
    return [
        "3." + c[len(prefix) :]
        for c in project["classifiers"]
        if c.startswith(prefix) and c[len(prefix) :].isdigit()
    ]


def test_the_classifiers_list_python_3_11_to_3_13_from_the_minimum_on() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert claimed() == ["3.11", "3.12", "3.13"]


def test_ci_runs_the_tests_on_every_claimed_version_beyond_the_main_one() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    loop = re.search(r"^for version in ([0-9. ]+); do$", script, re.M)
    assert loop is not None
    assert loop.group(1).split() == claimed()[1:]  # 3.11 runs the whole suite above
    tox = (ROOT / "tox.ini").read_text()
    assert "env_list = py311, py312, py313," in tox
