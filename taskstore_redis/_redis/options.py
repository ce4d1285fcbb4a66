"""What ``RedisBackend.from_url`` accepts, checked when it is called rather than at first use.

A malformed URL or an option no redis-py client takes would otherwise surface at the
first call, as redis-py's own ``ValueError`` or ``TypeError``. Messages show the URL
through :func:`taskstore_redis._core.shown.url`, never with its credentials.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._core import shown
from .._core.errors import InvalidArgument

SCHEMES = ("redis", "rediss", "unix")
_DB_PATH = re.compile(r"/?[0-9]*")
LONGEST_SOCKET_WAIT = 1e9
"""Seconds a finite socket timeout is cut to: sockets refuse about ten times more
(``OverflowError``), and a billion seconds is longer than any process lives."""
EXPECTED = "expected redis://host:port/db, rediss://… (TLS) or unix:///path"
_SKIPPED = frozenset({"self", "args", "kwargs", "connection_kwargs"})


def parameters(classes: Iterable[type]) -> tuple[frozenset[str], bool]:
    """The keyword names the classes' ``__init__`` take; and whether one takes any keyword.

    An ``__init__`` with ``**kwargs`` hands them up its MRO: the parents' names count
    too, and if no parent names them all (``object`` is reached) any keyword may be
    taken, as far as the signatures tell.
    """
    names: set[str] = set()
    open_ended = False
    for cls in classes:
        forwards = True
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            forwards = False
            for name, parameter in inspect.signature(init).parameters.items():
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    forwards = True
                elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
                    names.add(name)
            if not forwards:
                break
        open_ended = open_ended or forwards
    return frozenset(names - _SKIPPED), open_ended


class ClientOptions:
    """The redis-py options a standalone client and a cluster client take."""

    def __init__(self, standalone: Iterable[type], cluster: type) -> None:
        """``standalone``: the client, pool and connection classes; ``cluster``: its client."""
        self.standalone, _ = parameters(standalone)
        cluster_names, forwards = parameters([cluster])
        # a cluster client that takes **kwargs hands them to its nodes' standalone clients
        self.cluster = cluster_names | self.standalone if forwards else cluster_names

    def accepted(self, cluster: bool | None) -> frozenset[str]:
        """The names accepted in ``cluster`` mode (None: either, not known yet)."""
        if cluster is None:
            return self.standalone | self.cluster
        return self.cluster if cluster else self.standalone

    def check(
        self,
        names: Iterable[str],
        cluster: bool | None,
        own: Iterable[str] = (),
        where: str = "",
        *,
        listing: bool = True,
    ) -> None:
        """Raise InvalidArgument naming the first option not accepted, and what is.

        ``own``: the caller's own option names, accepted too; ``where``: where the
        names were found, for the message (`` in the URL``); ``listing``: whether the
        message lists every accepted option (a command line names only the closest).
        """
        mine = list(own)
        accepted = self.accepted(cluster)
        for name in names:
            if name in accepted or name in mine:
                continue
            mode = " on Redis Cluster" if cluster else " on standalone Redis"
            close = difflib.get_close_matches(name, [*mine, *accepted], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = f"{', '.join(mine)} and " if mine else ""
            unknown = f"unknown option {shown.printable(name)!r}{where}"
            unknown += f"{'' if cluster is None else mode}{hint}"
            if not listing:
                raise InvalidArgument(unknown)
            raise InvalidArgument(
                f"{unknown}: from_url takes {takes}the options of redis-py's client: "
                f"{', '.join(sorted(accepted))}"
            )


def check_url(
    url: object, options: ClientOptions, cluster: bool | None, *, listing: bool = True
) -> str:
    """Return ``url`` if it is a Redis URL whose query names accepted options.

    ``listing``: whether a message about an unknown option lists the accepted ones.

    Raises:
        InvalidArgument: not a str, control characters, another scheme, a host or port
            that does not parse, a path that is not a database number, or an unknown
            query option.

    """
    if not isinstance(url, str):
        raise InvalidArgument(f"the Redis URL must be a str, got {type(url).__name__}")
    masked = f"'{shown.url(url)}'"
    expected = EXPECTED
    if not url.isprintable():
        raise InvalidArgument(
            f"not a Redis URL: {masked} (it holds control characters); {expected}"
        )
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        _ = parts.port, parts.hostname  # ValueError: a bad port, a broken IPv6 address
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        raise InvalidArgument(
            f"not a Redis URL: {masked} (its host or port does not parse); {expected}"
        ) from None
    if scheme not in SCHEMES or not url.lower().startswith(f"{scheme}://"):
        raise InvalidArgument(f"not a Redis URL: {masked}; {expected}")
    if scheme != "unix" and not _DB_PATH.fullmatch(parts.path):
        raise InvalidArgument(
            f"not a Redis URL: {masked} (its path must be a database number, as in /0); {expected}"
        )
    if scheme == "unix" and not parts.path:
        raise InvalidArgument(f"not a Redis URL: {masked} (no socket path); {expected}")
    options.check(
        (name for name, _ in pairs), cluster, where=" in the URL's query", listing=listing
    )
    return url


def check_parsed(url: str, parse: Any) -> dict[str, Any]:
    """Run redis-py's URL parser ``parse`` on a checked ``url``; InvalidArgument if it refuses.

    What it refuses is a query value of the wrong kind (``?db=x``, ``?socket_timeout=y``).
    """
    try:
        parsed: dict[str, Any] = parse(url)
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"not a Redis URL: '{shown.url(url)}' (a query option has a value of the wrong "
            f"kind: db and the timeouts take numbers, the flags true or false); {EXPECTED}"
        ) from None
    return parsed


def socket_seconds(name: str, value: object) -> float | None:
    """A socket timeout as redis-py takes it: seconds > 0, or None for no limit.

    Any finite value means that long at most (cut to :data:`LONGEST_SOCKET_WAIT`);
    ``inf`` means no limit, as None does.

    Raises:
        InvalidArgument: not a number, NaN, zero or negative.

    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and math.isnan(value))
        or value <= 0
    ):
        raise InvalidArgument(
            f"{name} must be a number of seconds > 0, or None (or inf) for no limit; got {value!r}"
        )
    if value == math.inf:
        return None
    return float(min(LONGEST_SOCKET_WAIT, value))
