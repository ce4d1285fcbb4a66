"""The Redis URL of a command: checked before use, and the server reached before any work."""

from __future__ import annotations

import os
import re
from typing import Any

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from .._core import shown
from .._core.errors import InvalidArgument
from .._redis import options
from .._sync._redis import client_options
from ..testing import REDIS_URL_ENV
from ._exit import EXIT_UNREACHABLE, EXIT_USAGE, CliError

DEFAULT_URL = "redis://localhost:6379"
"""Where ``get``, ``list``, ``cleanup`` and ``doctor`` look without ``--redis-url``
or ``$TASKSTORE_REDIS_URL``."""

_PROBE_TIMEOUT_S = 3.0


def inspect_default() -> str:
    """The URL an inspecting command uses when none is given: the env var, else localhost."""
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_URL


def check_url(url: str) -> None:
    """Raise CliError (usage) unless ``url`` is a Redis URL that ``from_url`` takes.

    The check is the library's own (:func:`taskstore_redis._redis.options.check_url`):
    the command refuses exactly what the store would.
    """
    try:
        options.check_url(url, client_options(), None, listing=False)
        options.check_parsed(url, redis.connection.parse_url)
    except InvalidArgument as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def probe(url: str) -> dict[str, Any]:
    """Reach the server at ``url`` once (``HELLO``, which every user may send); return its reply.

    Raises CliError (unreachable) if the server cannot be reached or refuses the
    credentials, (usage) if the URL carries an option redis-py does not know.
    """
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=_PROBE_TIMEOUT_S,
            socket_timeout=_PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
    except (TypeError, ValueError) as exc:
        raise _bad_option(url, exc) from None
    try:
        untyped: Any = client
        reply = untyped.execute_command("HELLO")
    except redis.exceptions.AuthenticationError as exc:
        raise CliError(
            f"Redis at {shown.url(url)} refused the credentials ({shown.scrub(str(exc), [url])}); "
            "nothing was sent",
            EXIT_UNREACHABLE,
        ) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise CliError(
            f"cannot reach Redis at {shown.url(url)} ({shown.scrub(str(exc), [url])}); "
            "nothing was sent",
            EXIT_UNREACHABLE,
        ) from None
    except (TypeError, ValueError) as exc:
        raise _bad_option(url, exc) from None
    except redis.exceptions.ResponseError:
        return {}  # it answered: reachable (a server without HELLO, before Redis 6)
    except redis.exceptions.RedisError as exc:  # a reply that is no Redis reply
        raise CliError(
            f"no Redis answers at {shown.url(url)} ({shown.scrub(str(exc), [url])}); "
            "nothing was sent",
            EXIT_UNREACHABLE,
        ) from None
    finally:
        client.close()
    if isinstance(reply, list):  # RESP2: a flat list of names and values
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    return dict(reply) if isinstance(reply, dict) else {}


def _bad_option(url: str, exc: Exception) -> CliError:
    """A query option redis-py refused, named without redis-py's internals."""
    unknown = re.search(r"keyword argument '(\w+)'", str(exc))
    what = f"unknown option {unknown.group(1)!r}" if unknown else str(exc)
    return CliError(f"bad Redis URL '{shown.url(url)}': {shown.scrub(what, [url])}", EXIT_USAGE)
