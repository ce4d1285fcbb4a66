r"""How values look on a page: control characters shown, long values cut, charts drawn.

Every string a page shows passes through :func:`shown` (or :func:`json_shown`) and
then Jinja2's autoescape: markup is never obeyed, and a control character (an ANSI
escape, a bidirectional override) is written out as ``\\x1b``, ``\\u202e``.
"""

from __future__ import annotations

import json
from datetime import datetime

from markupsafe import Markup, escape

from .._core import shown as _shown
from .._core.shown import age

TEXT_LIMIT = 300
"""Characters of a string shown in a table before it is cut."""
VALUE_LIMIT = 2000
"""Characters of a JSON value (params, result, variables) shown before it is cut."""


def shown(value: object, limit: int | None = TEXT_LIMIT) -> str:
    """``value`` as text with its control characters escaped, cut after ``limit`` characters."""
    text = _shown.printable("" if value is None else str(value))
    if limit is not None and len(text) > limit:
        return text[:limit] + "…"
    return text


def field(value: object) -> Markup:
    """``value`` for a form field's ``value`` attribute: escaped, and kept whole.

    A form sends the value back as it was (an owner id with a control character
    still names its owner), so nothing is cut or rewritten; a character that is not
    printable is written as a numeric character reference, which the browser
    decodes into the field without it ever being in the page as it is.
    """
    text = str(escape("" if value is None else str(value)))
    return Markup("".join(ch if ch.isprintable() else f"&#{ord(ch)};" for ch in text))


def json_text(value: object) -> str:
    r"""``value`` as indented JSON, every non-printable character escaped (``\\u001b``)."""
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    return "".join(
        ch if ch.isprintable() or ch in "\n" else json.dumps(ch)[1:-1].replace("\\n", "\\u000a")
        for ch in text
    )


def json_shown(value: object, limit: int = VALUE_LIMIT) -> tuple[str, bool]:
    """:func:`json_text` cut after ``limit`` characters, and whether it was cut."""
    text = json_text(value)
    if len(text) > limit:
        return text[:limit] + "…", True
    return text, False


def until(deadline: datetime, now: datetime) -> str:
    """How long until ``deadline`` (``overdue`` once past)."""
    ms = (deadline - now).total_seconds() * 1000
    return "overdue" if ms < 0 else "in " + age(ms)


def when(moment: datetime | str | None) -> str:
    """A moment as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


CHART_WIDTH = 360
CHART_HEIGHT = 64


def throughput_chart(completed: list[float | None], failed: list[float | None]) -> Markup:
    """Completed (below) and failed (stacked above) per minute as an inline SVG bar chart.

    Only numbers go into the drawing; a minute without readings has no bar.
    """
    minutes = len(completed)
    bar = CHART_WIDTH / max(1, minutes)
    peak = max([(c or 0.0) + (f or 0.0) for c, f in zip(completed, failed, strict=True)] + [1.0])
    scale = (CHART_HEIGHT - 4) / peak
    parts = [
        f'<svg class="chart" role="img" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
    ]
    done = sum(c or 0.0 for c in completed)
    lost = sum(f or 0.0 for f in failed)
    parts.append(
        str(
            escape(
                f"completed and failed per minute over the last {minutes} minutes: "
                f"{done:.0f} completed, {lost:.0f} failed; peak {peak:.0f}/min"
            )
        ).join(("<title>", "</title>"))
    )
    parts.append(
        f'<line x1="0" y1="{CHART_HEIGHT - 0.5}" x2="{CHART_WIDTH}" y2="{CHART_HEIGHT - 0.5}" '
        'class="axis"/>'
    )
    for minute, (ok, bad) in enumerate(zip(completed, failed, strict=True)):
        x = minute * bar
        base = CHART_HEIGHT - 1.0
        if ok:
            height = ok * scale
            base -= height
            parts.append(
                f'<rect class="completed" x="{x:.1f}" y="{base:.1f}" '
                f'width="{bar - 1:.1f}" height="{height:.1f}"/>'
            )
        if bad:
            height = bad * scale
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{base - height:.1f}" '
                f'width="{bar - 1:.1f}" height="{height:.1f}"/>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
