"""Text that reaches a person: URLs without credentials, strings without live control characters.

One place decides how a Redis URL and a user's string look in a message, a log line
or a table: every error, log call and command output goes through these two helpers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

MASK = "***"
"""What a password or a user name with a password is replaced by."""

UNPARSED = "<unparsed>"
"""What stands for the rest of a URL that cannot be parsed."""

_SECRET_PARAMS = frozenset({"password", "username", "user", "pass", "auth", "token"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,20})://")


def url(raw: str) -> str:
    """``raw`` with its credentials masked, safe for a message or a log line.

    The password of the userinfo and every credential-like query parameter
    (``password=``, ``username=``…) become ``***``. A URL that cannot be parsed
    is shown as its scheme followed by ``<unparsed>``, never as written.
    """
    if not _SCHEME.match(raw):
        return UNPARSED
    try:
        parts = urlsplit(raw)
        _ = parts.port  # ValueError for a bad port or a broken IPv6 host
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _at, host = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
            query = urlencode(
                [(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*"
            )
        masked = f"{parts.scheme}://{netloc}{parts.path}"
        if query:
            masked += f"?{query}"
        if parts.fragment:
            masked += f"#{parts.fragment}"
    except ValueError:
        return _unparsed(raw)
    return printable(masked)


def _unparsed(raw: str) -> str:
    match = _SCHEME.match(raw)
    return f"{match.group(1)}://{UNPARSED}" if match else UNPARSED


def printable(text: str) -> str:
    r"""``text`` with every control character escaped (``\x1b``, ``\n``, ``\u202e``).

    Letters, digits, punctuation and spaces of any script pass unchanged; what a
    terminal would obey (escape sequences, carriage returns, bidirectional
    overrides, NUL) is written out as its escape, so one value stays on one line
    and a table keeps its columns.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    if ch == " " or unicodedata.category(ch) == "Zs":
        return ch
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


_USERINFO = re.compile(r"://([^/?#]*)@")
_SECRET_PARAM = re.compile(rf"(?i)(?:^|[?&;])(?:{'|'.join(sorted(_SECRET_PARAMS))})=([^&#;]*)")


def secrets(raw: str) -> list[str]:
    """The credentials written in ``raw``, found without parsing it (it may not parse).

    The userinfo (its password, and the whole of it) and the values of the
    credential-like query parameters, as written and percent-decoded.
    """
    found: list[str] = []
    for match in _USERINFO.finditer(raw):
        userinfo = match.group(1)
        found += [userinfo, userinfo.partition(":")[2]]
    found += [match.group(1) for match in _SECRET_PARAM.finditer(raw)]
    found += [unquote(one) for one in found]
    return sorted({one for one in found if one}, key=len, reverse=True)


def scrub(text: str, urls: Iterable[str | None]) -> str:
    """``text`` with the credentials of ``urls`` masked and its control characters escaped.

    For a text the library or the command did not write itself: an exception's, a log line's.
    """
    for url in urls:
        for secret in secrets(url or ""):
            text = text.replace(secret, MASK)
    return printable(text)


def age(ms: float | None) -> str:
    """A waiting time for people: ``-`` for none, else ms, s, min or h."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
