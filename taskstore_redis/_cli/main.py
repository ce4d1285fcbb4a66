"""The ``taskstore-redis`` command (also ``python -m taskstore_redis``).

Subcommands: ``demo`` and ``bench`` run on a throwaway Redis unless given
``--redis-url`` (or ``$TASKSTORE_REDIS_URL``); ``get``, ``list``, ``cleanup``,
``doctor``, ``worker``, ``queues`` and ``dashboard`` work on an existing server:
``--redis-url``, else ``$TASKSTORE_REDIS_URL``, else ``redis://localhost:6379``. Exit statuses are
listed in ``_exit``. The command needs the ``cli`` extra (rich); without it, it
says how to install it in one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._exit import EXIT_USAGE

INSTALL_HINT = "pip install 'taskstore-redis[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        import rich.console  # noqa: F401  (the one optional dependency every subcommand needs)
    except ImportError:
        print(f"taskstore-redis: the command line needs rich: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    from ._app import run_command

    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main())
