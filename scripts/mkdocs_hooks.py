"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

Docstrings name objects with Sphinx roles (``:class:`Lease```); the API reference
shows them as code, the role dropped and a leading ``~`` applied (last dotted part).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]*)</code>")


def _code(match: re.Match[str]) -> str:
    tilde, name = match[1], match[2]
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """The page's HTML with every Sphinx role in it shown as plain code."""
    return _ROLE.sub(_code, html)
