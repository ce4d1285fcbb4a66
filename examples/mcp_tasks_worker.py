"""The workers of the example MCP servers: tool calls run from a work queue in Redis.

A server answers a ``tools/call`` by submitting the call to the work queue
(``submit``) and returning the task at once; any number of these worker processes
run the calls (``run_worker``), each under a lease it keeps renewing. A worker
killed mid-call stops renewing: once its lease expires, another worker claims the
task (attempt 2) and runs the call again, and the client sees that result.

    python examples/mcp_tasks_worker.py --redis-url redis://localhost:6379 --lease-ms 5000

The tools (the job's params are ``{"tool": name, "arguments": {...}}``):

- ``slow_echo`` works ``steps`` steps of ``step_seconds`` each, saying in the
  task's status message which attempt and step it is at, then returns ``text``;
- ``greet`` asks the client for a name (the task is ``input_required`` until a
  ``tasks/update`` answers, through any server) and greets them.

Each result is an MCP ``CallToolResult`` (JSON), with the attempt that produced it
in ``structuredContent``.

Arguments are bounded (``inputSchema`` says how: a text of up to 1,000
characters, up to 100 steps of up to 10 s), so one call cannot hold a worker for
ever: the servers refuse others with an invalid-params error
(:func:`check_arguments`), and the worker checks again, since a job may come from
any process that can write to the queue.

This module also holds what the example servers share: their command line and
:class:`TokenMap`, the bearer tokens they accept and the owner each stands for.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

import taskstore_redis.asyncio as ts
from taskstore_redis.mcp.protocol import TasksProtocol

QUEUE = "mcp-tools"
"""The work queue the servers submit tool calls to."""

MAX_TEXT = 1_000
"""The longest ``text`` a tool call takes, in characters."""
MAX_STEPS = 100
"""The most ``steps`` of ``slow_echo``."""
MAX_STEP_SECONDS = 10
"""The longest ``step_seconds`` of ``slow_echo``: a call works 1,000 s at most."""

ECHO_ARGUMENTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": MAX_TEXT},
        "steps": {"type": "integer", "minimum": 0, "maximum": MAX_STEPS},
        "step_seconds": {"type": "number", "minimum": 0, "maximum": MAX_STEP_SECONDS},
    },
    "required": ["text"],
    "additionalProperties": False,
}
"""The arguments of ``slow_echo`` (and of the SDK server's ``queued_echo``)."""

TOOLS: list[dict[str, Any]] = [
    {
        "name": "slow_echo",
        "description": "Echo a text after working some steps, as a task.",
        "inputSchema": ECHO_ARGUMENTS,
    },
    {
        "name": "greet",
        "description": "Ask who is there, then greet them.",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
    },
]
"""The tools, as ``tools/list`` describes them."""

TOOL_NAMES = frozenset(tool["name"] for tool in TOOLS)

_CHECKERS = {tool["name"]: Draft202012Validator(tool["inputSchema"]) for tool in TOOLS}


class BadArguments(ValueError):
    """A tool call's name or arguments are not what the tool takes (JSON-RPC -32602)."""


def check_arguments(tool: object, arguments: object) -> dict[str, Any]:
    """The arguments of a call of ``tool``, checked against its ``inputSchema``.

    None stands for no arguments. Raises :class:`BadArguments`, whose message
    names the rule broken but never repeats the value (which may be large).
    """
    if not isinstance(tool, str) or tool not in _CHECKERS:
        raise BadArguments(f"unknown tool; the tools are {', '.join(sorted(_CHECKERS))}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise BadArguments("arguments must be an object")
    checker = _CHECKERS[tool]
    error = next(iter(checker.iter_errors(arguments)), None)
    if error is not None:
        raise BadArguments(f"{tool}: {_problem(error, checker.schema)}")
    for name, value in arguments.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise BadArguments(f"{tool}: {name} must be a finite number")
    return arguments


def _problem(error: ValidationError, schema: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "arguments"
    rule, value = error.validator, error.validator_value
    if rule == "additionalProperties":
        accepted = ", ".join(sorted(schema.get("properties", {}))) or "none"
        return f"unknown argument; the arguments are: {accepted}"
    if rule == "required":
        return f"{', '.join(value)} required"
    if rule == "type":
        return f"{where} must be of type {value}"
    return f"{where}: the {rule} is {value}"


ASK_NAME: dict[str, Any] = {
    "method": "elicitation/create",
    "params": {
        "mode": "form",
        "message": "Who is there?",
        "requestedSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        },
    },
}


def tool_result(text: str, attempt: int) -> dict[str, Any]:
    """A ``CallToolResult`` with ``text``, noting the attempt that made it."""
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"attempt": attempt},
        "isError": False,
    }


async def _slow_echo(
    lease: ts.Lease, store: ts.GenericTaskStore, arguments: dict[str, Any]
) -> dict[str, Any]:
    steps = int(arguments.get("steps", 4))
    pause = float(arguments.get("step_seconds", 0.25))
    for step in range(1, steps + 1):
        # Fenced writes: once this worker lost the lease they raise LeaseLost and the run
        # stops, so a stale attempt never reports progress.
        await lease.set_variables({"progress": {"attempt": lease.attempt, "step": step}})
        await lease.set_status_message(f"attempt {lease.attempt}: step {step} of {steps}")
        await asyncio.sleep(pause)
    return tool_result(str(arguments["text"]), lease.attempt)


async def _greet(lease: ts.Lease, store: ts.GenericTaskStore) -> dict[str, Any]:
    tasks = TasksProtocol(store, lease.owner_id)
    if "mcp.inputRequests.name" not in lease.task.variables:  # else asked by an earlier attempt
        await tasks.request_input(lease.task_id, {"name": ASK_NAME}, status_message="asking")
    answers = await tasks.wait_for_input(lease.task_id, ["name"])
    answer = answers["name"]
    if isinstance(answer, dict) and answer.get("action") == "accept":
        content = answer.get("content")
        if isinstance(content, dict) and isinstance(content.get("name"), str):
            return tool_result(f"Hello, {content['name']}!", lease.attempt)
    return tool_result("Nobody, then.", lease.attempt)


def handler_for(store: ts.GenericTaskStore) -> Any:
    """The ``run_worker`` handler running the tool calls of ``store``'s queue."""

    async def handle(lease: ts.Lease) -> dict[str, Any]:
        params = lease.params if isinstance(lease.params, dict) else {}
        tool = params.get("tool")
        try:
            arguments = check_arguments(tool, params.get("arguments"))
        except BadArguments as error:
            # A tool's own error is a completed task whose result says so (isError).
            return {"content": [{"type": "text", "text": str(error)}], "isError": True}
        if tool == "greet":
            return await _greet(lease, store)
        return await _slow_echo(lease, store, arguments)

    return handle


async def work(redis_url: str, prefix: str, lease_ms: int, sweep_every_s: float) -> None:
    """Run tool calls from the queue until SIGTERM."""
    async with ts.GenericTaskStore.from_url(redis_url, prefix=prefix) as store:
        await ts.run_worker(
            store,
            handler_for(store),
            queue=QUEUE,
            lease_ms=lease_ms,
            sweep_every_s=sweep_every_s,
            idle_wait_s=min(1.0, sweep_every_s),
        )


MIN_TOKEN_LENGTH = 32
"""The shortest token a token map takes: make them with ``secrets.token_urlsafe(32)``."""
TOKENS_ENV = "MCP_EXAMPLE_TOKENS_FILE"
"""The environment variable naming the token map when ``--tokens`` is not given."""


class TokenMap:
    """The bearer tokens a server accepts, and the owner of the tasks each one reaches.

    A static map, good for an example (use your identity provider's tokens in
    production): a JSON file holding one object, token to owner id::

        {"<43 random characters>": "alice", "<43 other characters>": "bob"}

    Two tokens may stand for one owner (two clients of one tenant). A token is
    at least :data:`MIN_TOKEN_LENGTH` characters of ``A-Z a-z 0-9 - . _ ~ + /``
    (a bearer token's alphabet); the file is read once, at start.
    """

    def __init__(self, owners: Mapping[str, str]) -> None:
        """Accept the tokens of ``owners`` (token -> owner id); ValueError if one is unfit."""
        if not owners:
            raise ValueError("the token map is empty: no client could call")
        self._owners: list[tuple[bytes, str]] = []
        for token, owner in owners.items():
            if not isinstance(token, str) or not _is_token(token):
                raise ValueError(
                    f"a token must be {MIN_TOKEN_LENGTH} or more characters of"
                    " A-Z a-z 0-9 - . _ ~ + / (secrets.token_urlsafe(32) makes one)"
                )
            if not isinstance(owner, str) or not owner:
                raise ValueError("an owner id must be a non-empty string")
            self._owners.append((_digest(token), owner))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TokenMap:
        """Read a token map (a JSON object, token -> owner id) from ``path``."""
        owners = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(owners, dict):
            raise ValueError(f"{path}: not a JSON object of token -> owner id")
        return cls(owners)

    def owner(self, authorization: str | None) -> str | None:
        """The owner a request's ``Authorization`` header stands for; None if no known token.

        Every known token is compared, in constant time, whatever matches.
        """
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not _is_token(token.strip()):
            return None
        digest, found = _digest(token.strip()), None
        for known, owner in self._owners:
            if hmac.compare_digest(known, digest):
                found = owner
        return found


def _is_token(token: str) -> bool:
    allowed = "-._~+/"
    return len(token) >= MIN_TOKEN_LENGTH and all(
        char.isascii() and (char.isalnum() or char in allowed) for char in token.rstrip("=")
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def token_map(path: str | None) -> TokenMap:
    """The token map at ``path`` (or in ``$MCP_EXAMPLE_TOKENS_FILE``); exit 2 if unusable."""
    path = path or os.environ.get(TOKENS_ENV)
    problem = f"a token map is needed: --tokens FILE (or ${TOKENS_ENV})"
    if path:
        try:
            return TokenMap.from_file(path)
        except (OSError, ValueError) as error:
            problem = f"token map {path}: {error}"
    print(f"error: {problem}", file=sys.stderr)
    raise SystemExit(2)


def arguments(description: str, *, server: bool) -> argparse.ArgumentParser:
    """The command line options the example processes share: Redis, key prefix (and more)."""
    parser = argparse.ArgumentParser(description=description)
    if server:
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument(
            "--tokens",
            help=f"a JSON file of bearer token -> owner id (default: ${TOKENS_ENV})",
        )
    parser.add_argument("--redis-url", default="redis://localhost:6379")
    parser.add_argument("--prefix", default="taskstore", help="the store's key prefix")
    return parser


def main() -> None:
    """Run one worker process."""
    parser = arguments(__doc__.splitlines()[0], server=False)
    parser.add_argument("--lease-ms", type=int, default=30_000, help="how long a claim holds")
    parser.add_argument("--sweep-s", type=float, default=10.0, help="expired-lease sweep period")
    args = parser.parse_args()
    asyncio.run(work(args.redis_url, args.prefix, args.lease_ms, args.sweep_s))


if __name__ == "__main__":
    main()
