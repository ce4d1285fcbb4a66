"""Encryption at rest of what a task tool's call stores: :class:`Sealer`.

With a key, a call's job (tool name, arguments, request context) and its result are
stored as ``{"$sealed": "<Fernet token>"}``: AES-128-CBC with HMAC-SHA256, through
``cryptography``. Without one, they are stored as they are. What is always stored in
clear: the task's id, owner, status, status message, timestamps, TTL, the queue's
bookkeeping (attempts, lease), and the input requests and answers of ``tasks/update``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .._core.errors import InvalidArgument

KEY_ENVIRONMENT = "TASKSTORE_REDIS_MCP_KEY"
"""The environment variable holding the key (a Fernet key: 32 url-safe base64 bytes)."""

SEALED = "$sealed"


class Sealer:
    """Seals and opens JSON values with one key, or passes them through without one."""

    def __init__(self, fernet: Any | None) -> None:
        """Use ``fernet`` (a ``cryptography.fernet.Fernet``), or None for no encryption."""
        self._fernet = fernet

    @classmethod
    def from_key(cls, key: str | bytes | None) -> Sealer:
        """A sealer with ``key``, else the key in ``TASKSTORE_REDIS_MCP_KEY``, else none.

        Raises:
            InvalidArgument: the key is not a Fernet key (the message never shows it).

        """
        if key is None:
            key = os.environ.get(KEY_ENVIRONMENT) or None
        if key is None:
            return cls(None)
        from cryptography.fernet import Fernet

        try:
            return cls(Fernet(key))
        except (ValueError, TypeError):
            raise InvalidArgument(
                f"the encryption key (key= or {KEY_ENVIRONMENT}) is not a Fernet key: "
                "32 url-safe base64-encoded bytes, as Fernet.generate_key() makes"
            ) from None

    @property
    def encrypts(self) -> bool:
        """Whether values are sealed."""
        return self._fernet is not None

    def seal(self, value: Any) -> Any:
        """``value`` as it is to be stored."""
        if self._fernet is None:
            return value
        token = self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())
        return {SEALED: token.decode()}

    def open(self, value: Any) -> Any:
        """A stored value, opened (a value stored in clear is returned as it is).

        Raises:
            InvalidArgument: the value is sealed and this sealer has no key, or
                another key sealed it.

        """
        if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)):
            return value
        if self._fernet is None:
            raise InvalidArgument(f"this value is encrypted; set {KEY_ENVIRONMENT} to read it")
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._fernet.decrypt(value[SEALED].encode()))
        except InvalidToken:
            raise InvalidArgument("this value was encrypted with another key") from None
