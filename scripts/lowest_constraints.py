"""Print pip constraints that pin every direct dependency to its lowest allowed version.

Reads ``pyproject.toml``: the ``dependencies`` and the optional dependencies of the
extras named on the command line (``test`` by default), following the project's own
``taskstore-redis[...]`` references, and prints one ``name==lower-bound`` line per
requirement, for ``pip install -c``. Every requirement needs a ``>=`` lower bound;
one without it is an error (a bound that is never tested is a guess).

    python scripts/lowest_constraints.py test > lowest.txt
    pip install -c lowest.txt -e '.[test]'
    python scripts/lowest_constraints.py --check-installed test
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*(.*)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(project: dict[str, Any], extras: list[str]) -> list[str]:
    """The project's dependencies and those of ``extras``, its own references expanded."""
    own = _canonical(str(project["name"]))
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    todo, seen = list(extras), set[str]()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise SystemExit(f"pyproject.toml: no extra named {extra!r}")
        for line in optional[extra]:
            match = _REQUIREMENT.match(line)
            if match is None:
                raise SystemExit(f"pyproject.toml: cannot read the requirement {line!r}")
            if _canonical(match[1]) == own:
                todo += [name.strip() for name in (match[2] or "").split(",") if name.strip()]
            else:
                found.append(line)
    return found


def lowest_constraints(pyproject: Path, extras: list[str]) -> list[str]:
    """``name==lower-bound`` for every direct requirement, sorted by name."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    pins: dict[str, str] = {}
    for line in _requirements(project, extras):
        match = _REQUIREMENT.match(line)
        if match is None:
            raise SystemExit(f"pyproject.toml: cannot read the requirement {line!r}")
        name, specifiers = _canonical(match[1]), match[3].split(";")[0]
        lower = [
            spec.strip()[2:].strip()
            for spec in specifiers.split(",")
            if spec.strip().startswith(">=")
        ]
        if len(lower) != 1:
            raise SystemExit(f"pyproject.toml: {line!r} needs exactly one '>=' lower bound")
        if pins.get(name, lower[0]) != lower[0]:
            raise SystemExit(
                f"pyproject.toml: {name} has two lower bounds, {pins[name]} and {lower[0]}"
            )
        pins[name] = lower[0]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _release(version: str) -> tuple[int, ...]:
    """``8.0`` and ``8.0.0`` alike: the release numbers without trailing zeros."""
    numbers = [int(part) for part in re.findall(r"\d+", version.split("+")[0])]
    while numbers and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def check_installed(pins: list[str]) -> list[str]:
    """The pins that this interpreter's environment does not hold, as messages."""
    problems = []
    for pin in pins:
        name, version = pin.split("==")
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: not installed, want {version}")
            continue
        print(f"{name} {installed}")
        if _release(installed) != _release(version):
            problems.append(f"{name}: {installed} installed, want {version}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", default=["test"], help="extras to include")
    parser.add_argument(
        "--pyproject", type=Path, default=Path(__file__).resolve().parent.parent / "pyproject.toml"
    )
    parser.add_argument(
        "--check-installed",
        action="store_true",
        help="instead, check that this interpreter has exactly these versions installed",
    )
    args = parser.parse_args(argv)
    pins = lowest_constraints(args.pyproject, args.extras)
    if args.check_installed:
        problems = check_installed(pins)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for line in pins:
        sys.stdout.write(f"{line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
