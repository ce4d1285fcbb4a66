"""Validation of caller input: JSON values, ids, TTLs and limits.

Every check here runs before anything is read or written, and raises
:class:`InvalidArgument` (or a subclass) with a message that names the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ._config import ANONYMOUS_OWNER_IDS, SecurityConfig, StoreConfig
from ._errors import AnonymousAccessDenied, InvalidArgument
from ._status import TaskStatus

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_ID_LENGTH = 16_384
"""Owner ids, task ids and request methods longer than this are refused."""


def check_json_value(value: Any, config: StoreConfig, what: str) -> None:
    """Check that ``value`` is plain JSON within the configured depth and string length.

    Walks the value without recursion, so a depth bomb cannot exhaust the stack.
    """
    max_depth = config.max_variable_depth
    max_len = config.max_string_length
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise InvalidArgument(f"{what}: integer out of the 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidArgument(f"{what}: NaN and Infinity are not JSON")
        elif isinstance(item, str):
            if len(item) > max_len:
                raise InvalidArgument(
                    f"{what}: string of {len(item)} characters, above the limit of {max_len}"
                )
        elif isinstance(item, (list, tuple, dict)):
            if depth + 1 > max_depth:
                raise InvalidArgument(f"{what}: nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise InvalidArgument(
                            f"{what}: object keys must be str, got {type(key).__name__}"
                        )
                    if len(key) > max_len:
                        raise InvalidArgument(f"{what}: object key above {max_len} characters")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            raise InvalidArgument(f"{what}: {type(item).__name__} is not a JSON value")


def check_variables(variables: Any, config: StoreConfig) -> Mapping[str, Any]:
    """Check a ``set_variables`` argument: a mapping of str keys to JSON values."""
    if not isinstance(variables, Mapping):
        raise InvalidArgument(
            f"variables must be a mapping of str to JSON, got {type(variables).__name__}"
        )
    check_json_value(dict(variables), config, "variables")
    return variables


def check_id(value: Any, what: str) -> str:
    """Check an owner id, task id or request method: a str of bounded length."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{what} is longer than {MAX_ID_LENGTH} characters")
    return value


def check_owner(owner_id: Any, security: SecurityConfig) -> str:
    """Check an owner id, refusing anonymous ones unless they are allowed."""
    owner = check_id(owner_id, "owner_id")
    if owner in ANONYMOUS_OWNER_IDS and not security.allow_anonymous:
        raise AnonymousAccessDenied(owner)
    return owner


def check_status(status: Any) -> TaskStatus:
    """Check and coerce a status given as a TaskStatus or its wire string."""
    try:
        return TaskStatus(status)
    except ValueError:
        allowed = ", ".join(s.value for s in TaskStatus)
        raise InvalidArgument(f"unknown status {status!r}; expected one of {allowed}") from None


def check_status_message(message: Any, config: StoreConfig) -> str | None:
    """Check an optional status message."""
    if message is None:
        return None
    if not isinstance(message, str):
        raise InvalidArgument(f"status_message must be a str or None, got {type(message).__name__}")
    check_json_value(message, config, "status_message")
    return message


def resolve_ttl(ttl_ms: Any, config: StoreConfig) -> int | None:
    """Apply the default TTL and reject (never clamp) a negative or too large one."""
    if ttl_ms is None:
        return config.default_ttl_ms
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool):
        raise InvalidArgument(f"ttl_ms must be an int or None, got {type(ttl_ms).__name__}")
    if ttl_ms < 0:
        raise InvalidArgument(f"ttl_ms must not be negative, got {ttl_ms}")
    if config.max_ttl_ms is not None and ttl_ms > config.max_ttl_ms:
        raise InvalidArgument(f"ttl_ms {ttl_ms} is above the maximum of {config.max_ttl_ms}")
    return ttl_ms


def resolve_limit(limit: Any, config: StoreConfig) -> int:
    """Apply the default page size and reject one outside 1..list_max_limit."""
    if limit is None:
        return config.list_default_limit
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise InvalidArgument(f"limit must be an int or None, got {type(limit).__name__}")
    if not 1 <= limit <= config.list_max_limit:
        raise InvalidArgument(f"limit must be between 1 and {config.list_max_limit}, got {limit}")
    return limit
