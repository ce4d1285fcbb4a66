"""Who may act: the token, the session cookie it opens, and the CSRF value of each form.

A browser signs in by posting the token once; it gets a session cookie
(``HttpOnly``, ``SameSite=Strict``) whose value is a random nonce and its HMAC
under a key made when the app is made, so no session outlives the process and
the token itself is never stored in the browser. Every form carries a CSRF value,
the HMAC of the session's nonce: a page of another site can make the browser post,
but can neither read that value nor send the cookie (``SameSite``). A program
sends ``Authorization: Bearer TOKEN`` instead, with no cookie, and needs no CSRF value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request

COOKIE = "taskstore_dashboard"
"""The session cookie's name."""


class Guard:
    """The token's checks for one app (``token`` None: nobody may act)."""

    def __init__(self, token: str | None) -> None:
        """Check against ``token``; the signing key is new for each guard."""
        self._token = token
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        """A token is set: signing in is possible."""
        return self._token is not None

    def token_matches(self, given: str) -> bool:
        """``given`` is the token (compared in constant time)."""
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode(), self._token.encode())

    def new_session(self) -> str:
        """A fresh session cookie value: ``nonce.mac``."""
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._mac('session', nonce)}"

    def session(self, request: Request) -> str | None:
        """The nonce of the request's valid session cookie, else None."""
        if self._token is None:
            return None
        value = request.cookies.get(COOKIE, "")
        nonce, _, mac = value.partition(".")
        if nonce and hmac.compare_digest(mac, self._mac("session", nonce)):
            return nonce
        return None

    def bearer(self, request: Request) -> bool:
        """The request carries ``Authorization: Bearer <the token>``."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def csrf(self, nonce: str) -> str:
        """The CSRF value of the forms of session ``nonce``."""
        return self._mac("csrf", nonce)

    def csrf_matches(self, nonce: str, given: str) -> bool:
        """``given`` is the CSRF value of session ``nonce``."""
        return hmac.compare_digest(given.encode(), self.csrf(nonce).encode())

    def notice_mac(self, notice: str) -> str:
        """The signature of a notice this dashboard shows after an action it did."""
        return self._mac("notice", notice)[:32]

    def notice_matches(self, notice: str, given: str) -> bool:
        """``given`` signs ``notice``: this dashboard wrote it, not a crafted link."""
        return hmac.compare_digest(given.encode(), self.notice_mac(notice).encode())

    def _mac(self, purpose: str, nonce: str) -> str:
        message = f"{purpose}:{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
