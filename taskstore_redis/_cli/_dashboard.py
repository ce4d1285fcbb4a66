"""``taskstore-redis dashboard``: the web dashboard of a key prefix, served until Ctrl-C.

It listens on 127.0.0.1 unless ``--host`` says otherwise, and says where. Without
``--token`` (or ``--token-file``) it is read-only; with one, a browser signs in
with it to cancel, resubmit, pause and resume, and every such action is logged on
stderr with its client. The token and the Redis password are never printed.
"""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from .._core import shown
from .._core.errors import InvalidArgument
from ._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError
from ._top import _seconds

INSTALL_HINT = "pip install 'taskstore-redis[cli,dashboard]'"
DEFAULT_PORT = 8025
DEFAULT_HOST = "127.0.0.1"
_GRACE_S = 2.0
"""How long Ctrl-C or SIGTERM waits for open responses (a task's live view) before closing them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the dashboard command's options to its parser."""
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"the address to listen on (default: {DEFAULT_HOST}, this machine only)",
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"the port (default: {DEFAULT_PORT})"
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--token", default=None, help="the token that allows actions (default: read-only)"
    )
    secret.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help="read the token from FILE (its first line), so it stays out of the process list",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="the store is read at most once per interval, for every open page (2)",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def check(args: argparse.Namespace) -> None:
    """The extra is installed and the token readable: else one line, before Redis is reached."""
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CliError(f"the dashboard needs {exc.name}: {INSTALL_HINT}", EXIT_USAGE) from None
    args.token = _token(args)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is None:
        if args.token is not None and not args.token.strip():
            raise InvalidArgument("--token must not be empty")
        return args.token.strip() if args.token is not None else None
    path = Path(args.token_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise InvalidArgument(
            f"cannot read the token file {shown.printable(str(path))!r}: {why}"
        ) from None
    token = text.splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise InvalidArgument(f"the token file {shown.printable(str(path))!r} is empty")
    return token


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening; CliError if that is not possible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {host}: {exc.strerror}", EXIT_USAGE) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CliError(f"cannot listen on {host}:{port}: {why}", EXIT_FAILED) from None
    sock.setblocking(False)
    return sock


def run(args: argparse.Namespace, url: str | None, console: Console) -> int:
    """Serve the dashboard until Ctrl-C or SIGTERM; return the exit status."""
    assert url is not None  # the command always works on a server
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    where = f"http://{shown_host}:{port}/"
    mode = (
        "read-only (no token given)"
        if args.token is None
        else "actions (cancel, resubmit, pause, resume) after signing in with the token"
    )
    reach = (
        "this machine only; --host 0.0.0.0 listens on every interface"
        if host in ("127.0.0.1", "::1")
        else "every machine that can reach this address"
    )
    console.print(
        f"dashboard of key prefix {args.prefix!r} on {shown.url(url)} at {where}\n"
        f"  listening on {host}: {reach}\n  {mode}\n  Ctrl-C stops it",
        markup=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    actions = logging.getLogger("taskstore_redis.dashboard")
    actions.addHandler(handler)
    actions.setLevel(logging.INFO)
    try:
        anyio.run(_serve, url, args, sock)
    finally:
        actions.removeHandler(handler)
        sock.close()
    return EXIT_OK


async def _serve(url: str, args: argparse.Namespace, sock: socket.socket) -> None:
    import uvicorn

    from .._async._store import GenericTaskStore
    from ..dashboard import create_app

    store = GenericTaskStore.from_url(url, prefix=args.prefix)
    try:
        app = create_app(store, token=args.token, interval=args.interval)
        options: dict[str, Any] = {
            "log_level": "warning",
            "access_log": False,
            "lifespan": "off",
            # a task page's live view stays open: stopping does not wait for it
            "timeout_graceful_shutdown": _GRACE_S,
        }
        server = uvicorn.Server(uvicorn.Config(app, **options))
        await server.serve(sockets=[sock])
    finally:
        await store.aclose()
