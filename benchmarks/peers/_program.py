"""What every peer program shares (stdlib only: each runs in its own environment).

A peer program is run as a script, so this folder is on its path: ``from _program
import contract_parser``.
"""

from __future__ import annotations

import argparse
import re


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _prefix(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        raise argparse.ArgumentTypeError("letters, digits, _ . - only")
    return text


def contract_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options the runner passes to every peer (see run.py)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--jobs", type=positive, default=20_000)
    p.add_argument("--processes", type=positive, default=1)
    p.add_argument("--concurrency", type=positive, default=10)
    p.add_argument("--prefix", type=_prefix, required=True)
    p.add_argument("--timeout", type=positive, default=300)
    return p
