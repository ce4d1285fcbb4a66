"""Auto-pipelining: commands issued at the same moment share one round trip."""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio
import redis.asyncio
import redis.exceptions

from .._redis.routing import pipeline_route


class _Call:
    __slots__ = ("args", "done", "error", "result", "unsent")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.unsent = False

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class AutoPipeline:
    """Coalesce the commands that callers issue at the same moment into one pipeline.

    The first caller of a moment leads: it yields once so that the others can
    queue their commands, then sends them all in one non-transactional pipeline
    and hands each caller its own result or error. A caller alone sends its
    command as it is. On Redis Cluster redis-py splits the pipeline per node.
    """

    def __init__(self, enabled: bool = True) -> None:
        """Coalesce commands when ``enabled``; else send each one on its own."""
        self.enabled = enabled
        self._lock = threading.Lock()
        self._pending: list[_Call] = []
        self._pid = os.getpid()

    async def execute(
        self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster, *args: Any
    ) -> Any:
        """Send one command, possibly in a pipeline with others; return its reply."""
        untyped: Any = client  # redis-py leaves execute_command untyped on clusters
        if not self.enabled:
            return await untyped.execute_command(*args)
        while True:
            call = _Call(args)
            if not self._enqueue(call):
                await call.done.wait()
                if call.unsent:
                    continue  # its leader was cancelled before sending: queue it again
                return call.outcome()
            try:
                await anyio.sleep(0)  # let the callers of this moment queue their commands
            except BaseException:
                for other in self._take_batch():
                    if other is not call:
                        other.unsent = True
                        other.done.set()
                raise
            batch = self._take_batch()
            try:
                await self._send(untyped, batch)
            except BaseException as exc:
                for other in batch:
                    if other is not call and other.error is None:
                        other.error = redis.exceptions.ConnectionError(
                            f"the pipeline carrying this command failed: {exc!r}"
                        )
                raise
            finally:
                for other in batch:
                    other.done.set()
            return call.outcome()

    def _take_batch(self) -> list[_Call]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch

    def _enqueue(self, call: _Call) -> bool:
        """Queue a call; return whether it leads its batch."""
        if self._pid != os.getpid():  # a forked child: the queue and lock are the parent's
            self._lock = threading.Lock()
            self._pending = []
            self._pid = os.getpid()
        with self._lock:
            self._pending.append(call)
            return len(self._pending) == 1

    @staticmethod
    async def _send(client: Any, batch: list[_Call]) -> None:
        if len(batch) == 1:
            try:
                batch[0].result = await client.execute_command(*batch[0].args)
            except redis.exceptions.RedisError as exc:
                batch[0].error = exc
            return
        async with client.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.execute_command(*call.args, **pipeline_route(client, call.args))
            replies = await pipe.execute(raise_on_error=False)
        for call, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                call.error = reply
            else:
                call.result = reply
