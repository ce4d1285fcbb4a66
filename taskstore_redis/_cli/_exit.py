"""The exit statuses of every ``taskstore-redis`` subcommand, and the error that carries one.

======  =================================================================
status  meaning
======  =================================================================
0       done; every check passed
1       the command ran and its answer is a failure: a demo or doctor check
        failed, the task was not found, the server refused an operation
2       usage or bad input: an unknown option, a malformed URL or key prefix,
        a bad cursor, a missing optional dependency
3       no server to work with: unreachable, credentials refused, or no
        throwaway Redis could be started; nothing was sent
130     interrupted (Ctrl-C)
======  =================================================================

This module needs nothing beyond the standard library: it is imported before the
command line checks that its optional dependencies are installed.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A problem the command reports in one line on stderr, with its exit status."""

    def __init__(self, message: str, status: int) -> None:
        """``message``: one line, without a trailing period; ``status``: the exit status."""
        super().__init__(message)
        self.status = status
