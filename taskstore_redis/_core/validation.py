"""Validation of caller input: JSON values, ids, TTLs and limits.

Every check here runs before anything is read or written, and raises
:class:`InvalidArgument` (or a subclass) with a message that names the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .config import ANONYMOUS_OWNER_IDS, SecurityConfig, StoreConfig
from .errors import AnonymousAccessDenied, InvalidArgument, InvalidLeaseToken
from .status import TaskStatus

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_ID_LENGTH = 16_384
"""Owner ids, task ids and request methods longer than this are refused."""


def _plain_str(value: str, max_len: int, what: str, *, key: bool = False) -> str:
    """A plain ``str`` copy of ``value``, refused if too long or not encodable as UTF-8."""
    if type(value) is str and len(value) <= max_len and value.isascii():
        return value  # the common case: a plain ASCII str is itself and always valid UTF-8
    plain = str.__str__(value)  # the characters themselves, whatever a subclass overrides
    if len(plain) > max_len:
        if key:
            raise InvalidArgument(f"{what}: object key above {max_len} characters")
        raise InvalidArgument(
            f"{what}: string of {len(plain)} characters, above the limit of {max_len}"
        )
    try:
        plain.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what}: string is not valid Unicode (lone surrogate)") from None
    return plain


def clean_json_value(value: Any, config: StoreConfig, what: str) -> Any:
    """Return a copy of ``value`` made of plain JSON types, or raise InvalidArgument.

    The copy holds exactly what was checked (contents are read with the builtin
    types' own methods, so a subclass cannot show the check one thing and the
    encoder another) and is what gets stored. Limits: ``max_variable_depth``
    levels of nesting, ``max_string_length`` characters per string and key,
    64-bit integers, finite floats. Walks without recursion, so a depth bomb
    cannot exhaust the stack.
    """
    max_depth = config.max_variable_depth
    max_len = config.max_string_length
    root: list[Any] = [None]
    # (the value to copy, its depth, the container of its copy, its slot there)
    stack: list[tuple[Any, int, Any, Any]] = [(value, 0, root, 0)]
    while stack:
        item, depth, parent, slot = stack.pop()
        if item is None or item is True or item is False:
            parent[slot] = item
        elif isinstance(item, int):
            number = int.__int__(item)
            if not INT64_MIN <= number <= INT64_MAX:
                raise InvalidArgument(f"{what}: integer out of the 64-bit range")
            parent[slot] = number
        elif isinstance(item, float):
            real = float.__float__(item)
            if not math.isfinite(real):
                raise InvalidArgument(f"{what}: NaN and Infinity are not JSON")
            parent[slot] = real
        elif isinstance(item, str):
            parent[slot] = _plain_str(item, max_len, what)
        elif isinstance(item, (dict, list, tuple)):
            if depth + 1 > max_depth:
                raise InvalidArgument(f"{what}: nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                copy: dict[str, Any] = {}
                for key, child in dict.items(item):
                    if not isinstance(key, str):
                        raise InvalidArgument(
                            f"{what}: object keys must be str, got {type(key).__name__}"
                        )
                    plain_key = _plain_str(key, max_len, what, key=True)
                    copy[plain_key] = None
                    stack.append((child, depth + 1, copy, plain_key))
                parent[slot] = copy
            else:
                children = list.copy(item) if isinstance(item, list) else tuple.__iter__(item)
                items = list(children)
                parent[slot] = [None] * len(items)
                stack.extend((child, depth + 1, parent[slot], n) for n, child in enumerate(items))
        else:
            raise InvalidArgument(f"{what}: {type(item).__name__} is not a JSON value")
    return root[0]


def clean_variables(variables: Any, config: StoreConfig) -> dict[str, Any]:
    """Check a ``set_variables`` argument and return the plain copy to merge."""
    if not isinstance(variables, Mapping):
        raise InvalidArgument(
            f"variables must be a mapping of str to JSON, got {type(variables).__name__}"
        )
    snapshot = dict(variables) if not isinstance(variables, dict) else variables
    cleaned: dict[str, Any] = clean_json_value(snapshot, config, "variables")
    return cleaned


def check_id(value: Any, what: str) -> str:
    """Check an owner id, task id or request method: a str of bounded length, as a plain str."""
    if type(value) is str and value.isascii() and len(value) <= MAX_ID_LENGTH:
        return value  # the common case: a plain ASCII str is always valid UTF-8
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
    return _plain_str(value, MAX_ID_LENGTH, what)


def check_owner(owner_id: Any, security: SecurityConfig) -> str:
    """Check an owner id, refusing anonymous ones unless they are allowed."""
    owner = check_id(owner_id, "owner_id")
    if owner in ANONYMOUS_OWNER_IDS and not security.allow_anonymous:
        raise AnonymousAccessDenied(owner)
    return owner


_STATUS_BY_VALUE = {member.value: member for member in TaskStatus}


def check_status(status: Any) -> TaskStatus:
    """Check and coerce a status given as a TaskStatus or its wire string."""
    if type(status) is TaskStatus:
        return status
    if type(status) is str:
        found = _STATUS_BY_VALUE.get(status)
        if found is not None:
            return found
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
    return _plain_str(message, config.max_string_length, "status_message")


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


def check_wait(after_version: object, until_terminal: object, timeout: object) -> None:
    """Check the arguments of ``wait``: a version >= 0 or None, a bool, a timeout >= 0 or None."""
    if after_version is not None and (
        not isinstance(after_version, int) or isinstance(after_version, bool) or after_version < 0
    ):
        raise InvalidArgument(f"after_version must be an int >= 0 or None, got {after_version!r}")
    if not isinstance(until_terminal, bool):
        raise InvalidArgument(f"until_terminal must be a bool, got {until_terminal!r}")
    if until_terminal and after_version is not None:
        raise InvalidArgument("pass after_version or until_terminal=True, not both")
    if timeout is not None and (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or _is_nan(timeout)
        or timeout < 0
    ):
        raise InvalidArgument(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")


MAX_QUEUE_NAME_LENGTH = 200
"""Queue names longer than this are refused."""


def check_queue(queue: Any) -> str:
    """Check a queue name: a non-empty str of at most 200 characters."""
    name = check_id(queue, "queue")
    if not name or len(name) > MAX_QUEUE_NAME_LENGTH:
        raise InvalidArgument(
            f"queue must be 1 to {MAX_QUEUE_NAME_LENGTH} characters, got {name!r}"
        )
    return name


def check_worker_id(worker_id: Any) -> str:
    """Check an optional worker id (None: empty), at most 200 characters."""
    if worker_id is None:
        return ""
    name = check_id(worker_id, "worker_id")
    if len(name) > MAX_QUEUE_NAME_LENGTH:
        raise InvalidArgument(f"worker_id above {MAX_QUEUE_NAME_LENGTH} characters")
    return name


def _whole(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{what} must be an int, got {type(value).__name__}")
    return int(value)


def resolve_lease_ms(lease_ms: Any, config: StoreConfig) -> int:
    """Apply the default lease and refuse one that is not in 1..``max_lease_ms``."""
    if lease_ms is None:
        return config.default_lease_ms
    value = _whole(lease_ms, "lease_ms")
    if not 1 <= value <= config.max_lease_ms:
        raise InvalidArgument(f"lease_ms must be from 1 to {config.max_lease_ms}, got {value}")
    return value


def check_delay(delay_ms: Any, config: StoreConfig, name: str = "delay_ms") -> int:
    """Check a delay: an int from 0 to ``max_ttl_ms`` (one day when there is no maximum)."""
    value = _whole(delay_ms, name)
    limit = config.max_ttl_ms if config.max_ttl_ms is not None else 86_400_000
    if not 0 <= value <= limit:
        raise InvalidArgument(f"{name} must be from 0 to {limit}, got {value}")
    return value


MAX_PRIORITY = 9
"""The highest priority a submitted task can have (0 is the lowest and the default)."""


def check_priority(priority: Any) -> int:
    """Check a priority: an int from 0 to ``MAX_PRIORITY``."""
    value = _whole(priority, "priority")
    if not 0 <= value <= MAX_PRIORITY:
        raise InvalidArgument(f"priority must be from 0 to {MAX_PRIORITY}, got {value}")
    return value


def resolve_max_attempts(max_attempts: Any, config: StoreConfig) -> int:
    """Apply the default attempt count and refuse one below 1 (or absurdly high)."""
    if max_attempts is None:
        return config.default_max_attempts
    value = _whole(max_attempts, "max_attempts")
    if not 1 <= value <= 1_000_000:
        raise InvalidArgument(f"max_attempts must be from 1 to 1000000, got {value}")
    return value


def check_count(count: Any, config: StoreConfig) -> int:
    """Check a claim count: an int from 1 to ``max_claim_count``."""
    value = _whole(count, "count")
    if not 1 <= value <= config.max_claim_count:
        raise InvalidArgument(f"count must be from 1 to {config.max_claim_count}, got {value}")
    return value


def check_timeout(timeout: Any) -> float | None:
    """Check a timeout: seconds >= 0 (up to ``inf``), or None to wait as long as it takes.

    Any such value means "that long at most": an int too large for a float is ``inf``.
    """
    if timeout is None:
        return None
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or _is_nan(timeout):
        raise InvalidArgument(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    if timeout < 0:
        raise InvalidArgument(f"timeout must not be negative, got {timeout!r}")
    try:
        return float(timeout)
    except OverflowError:  # an int beyond any float: longer than any wait
        return math.inf


def _is_nan(value: int | float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def check_token(token: Any, task_id: str) -> int:
    """Check a lease's fencing token: an int >= 1."""
    if not isinstance(token, int) or isinstance(token, bool) or token < 1:
        raise InvalidLeaseToken(task_id, token)
    return int(token)
