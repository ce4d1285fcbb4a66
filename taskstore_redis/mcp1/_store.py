"""RedisTaskStore: the MCP Python SDK's ``TaskStore`` over the async task store."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from mcp.shared.experimental.tasks.store import TaskStore as SdkTaskStore
from mcp.types import Result, Task, TaskMetadata
from mcp.types import TaskStatus as SdkTaskStatus

from .._async._store import GenericTaskStore
from .._core.config import SecurityConfig, StoreConfig
from .._core.errors import (
    InvalidArgument,
    InvalidTransition,
    TaskAlreadyExists,
    TaskExpired,
    TaskNotFound,
)
from .._core.model import JSONValue, TaskRecord
from .._core.status import TaskStatus
from ..mcp._owner import OwnerSource, resolve_owner
from ._results import ResultCodec

_SeenKey = tuple[int, str, str]
_seen: ContextVar[dict[_SeenKey, int] | None] = ContextVar("taskstore_redis_mcp_seen", default=None)
"""The version of each task as this context (a request handler, say) was last shown it."""
_REMEMBERED_VERSIONS = 64


def task_of(record: TaskRecord) -> Task:
    """The SDK's ``Task`` for one of our records."""
    return Task.model_validate(record.to_wire_task())


class RedisTaskStore(SdkTaskStore):
    """An MCP SDK ``TaskStore`` whose tasks live in a shared task store (Redis, typically).

    Every server process built on the same Redis sees the same tasks: a task
    created by one can be read, updated, finished and waited for by any other,
    and ``wait_for_update`` wakes within milliseconds of a change made anywhere.

    Tasks belong to an owner: ``owner`` is a fixed id, or a function called on
    every operation that returns the owner of the request being served (the
    authenticated principal, say). A task of another owner looks exactly like a
    missing one.

    Differences from the SDK's in-memory store, all on purpose:

    - A task's TTL counts from its creation (as the MCP specification says) and
      never restarts when the task ends. A task whose TTL ran out is gone for
      this API (``get_task`` and ``get_result`` return None, updates raise).
      Without a TTL in the metadata the store's ``default_ttl_ms`` applies; a
      TTL above its ``max_ttl_ms`` is lowered to it (the task says which).
    - A terminal task keeps its status; its message may still change, and its
      result may be stored once if it has none.
    - ``notify_update`` is a write: it wakes the task's waiters in every process.
    """

    def __init__(
        self,
        store: GenericTaskStore,
        owner: OwnerSource,
        *,
        request_method: str = "tools/call",
        page_size: int | None = None,
        result_types: Iterable[type[Result]] = (),
    ) -> None:
        """Serve the tasks of ``owner`` from ``store``.

        Args:
            store: the async task store (``taskstore_redis.asyncio.GenericTaskStore``).
            owner: the owner id, or a function returning the current request's owner.
            request_method: what the tasks record as their request method.
            page_size: tasks per ``list_tasks`` page (None: the store's default).
            result_types: result classes of your own, besides ``mcp.types``'s, that
                ``get_result`` should give back as themselves.

        """
        self._store = store
        self._owner = owner
        self._method = request_method
        self._page_size = page_size
        self._codec = ResultCodec(result_types)

    @classmethod
    def from_url(
        cls,
        url: str,
        owner: OwnerSource,
        *,
        config: StoreConfig | None = None,
        security: SecurityConfig | None = None,
        request_method: str = "tools/call",
        page_size: int | None = None,
        result_types: Iterable[type[Result]] = (),
        **backend_options: Any,
    ) -> RedisTaskStore:
        """Build it on Redis or Redis Cluster at ``url``; nothing connects until first use."""
        store = GenericTaskStore.from_url(url, config, security, **backend_options)
        return cls(
            store,
            owner,
            request_method=request_method,
            page_size=page_size,
            result_types=result_types,
        )

    @property
    def store(self) -> GenericTaskStore:
        """The task store underneath."""
        return self._store

    async def aclose(self) -> None:
        """Close the task store underneath."""
        await self._store.aclose()

    def owner_id(self) -> str:
        """The owner of the tasks this call may see."""
        return resolve_owner(self._owner)

    # --- the SDK's TaskStore ------------------------------------------------------------

    async def create_task(self, metadata: TaskMetadata, task_id: str | None = None) -> Task:
        """Create a ``working`` task; raise ValueError if ``task_id`` is taken."""
        ttl = self._ttl(metadata)
        try:
            record = await self._store.create(
                self._method, ttl, owner_id=self.owner_id(), task_id=task_id
            )
        except TaskAlreadyExists:
            raise ValueError(f"Task with ID {task_id} already exists") from None
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from exc
        return self._remembered(record)

    def _ttl(self, metadata: TaskMetadata) -> int | None:
        ttl, most = metadata.ttl, self._store.config.max_ttl_ms
        return ttl if ttl is None or most is None else min(ttl, most)

    async def submit_task(
        self,
        metadata: TaskMetadata,
        params: JSONValue,
        *,
        queue: str = "default",
        max_attempts: int | None = None,
    ) -> Task:
        """Create a ``working`` task whose work is queued for a worker pool; return it.

        Not part of the SDK's ``TaskStore``: instead of ``run_task`` (the work in
        this process), the work is ``params`` (the job's input) on the work queue
        ``queue``, run by a worker process (``claim``, ``run_worker``) that ends
        the task through its lease. A worker that dies mid-task leaves it to the
        next claim once its lease expires, up to ``max_attempts`` attempts. The
        result a worker completes the task with (a plain ``CallToolResult`` JSON
        object, say) comes back from :meth:`get_result` as a ``Result`` with its
        fields. Answer the ``tools/call`` with ``CreateTaskResult(task=...)``.

        Raises:
            ValueError: bad params (not plain JSON, too large) or settings.

        """
        try:
            record = await self._store.submit(
                self._method,
                params,
                owner_id=self.owner_id(),
                queue=queue,
                ttl_ms=self._ttl(metadata),
                max_attempts=max_attempts,
            )
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from exc
        return self._remembered(record)

    async def get_task(self, task_id: str) -> Task | None:
        """Return the task, or None if there is none (or its TTL ran out)."""
        record = await self._live_or_none(task_id)
        return None if record is None else self._remembered(record)

    async def update_task(
        self,
        task_id: str,
        status: SdkTaskStatus | None = None,
        status_message: str | None = None,
    ) -> Task:
        """Change the status and/or the message (None: leave it as it is).

        The same status again is no change of status (allowed even when
        terminal); a terminal task never moves to another status.
        """
        record = await self._live(task_id)
        current = record.task.status
        owner = record.owner_id
        try:
            if status is None or status == current:
                if status_message is None:
                    return self._remembered(record)
                updated = await self._store.set_status_message(
                    task_id, status_message, owner_id=owner
                )
            elif current.is_terminal:
                raise ValueError(f"Cannot transition from terminal status '{current.value}'")
            else:
                message = record.task.status_message if status_message is None else status_message
                updated = await self._store.update_status(task_id, status, message, owner_id=owner)
        except (TaskNotFound, TaskExpired):
            raise ValueError(f"Task with ID {task_id} not found") from None
        except InvalidTransition as exc:
            if TaskStatus(exc.from_status).is_terminal:
                raise ValueError(
                    f"Cannot transition from terminal status '{exc.from_status}'"
                ) from None
            raise ValueError(str(exc)) from None
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None
        return self._remembered(updated)

    async def store_result(self, task_id: str, result: Result) -> None:
        """Keep ``result`` for the task (once the task is terminal, only if it has none)."""
        value = self._codec.encode(result)
        record = await self._live(task_id)
        try:
            await self._store.set_result(task_id, value, owner_id=record.owner_id)
        except (TaskNotFound, TaskExpired):
            raise ValueError(f"Task with ID {task_id} not found") from None
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None

    async def get_result(self, task_id: str) -> Result | None:
        """Return the stored result, of the type it was stored as; None if there is none."""
        record = await self._live_or_none(task_id)
        if record is None or record.result is None:
            return None
        return self._codec.decode(record.result)

    async def list_tasks(self, cursor: str | None = None) -> tuple[list[Task], str | None]:
        """One page of the owner's tasks, newest first, and the cursor of the next."""
        try:
            page = await self._store.list(
                owner_id=self.owner_id(), cursor=cursor, limit=self._page_size
            )
        except InvalidArgument:
            raise ValueError(f"Invalid cursor: {cursor}") from None
        tasks = [task_of(record) for record in page.tasks if not record.is_expired()]
        return tasks, page.next_cursor

    async def delete_task(self, task_id: str) -> bool:
        """Remove the task; False if there was none."""
        return await self._store.delete(task_id, owner_id=self.owner_id())

    async def wait_for_update(self, task_id: str) -> None:
        """Return once the task changed after this store last showed it (at once if it has).

        The baseline is the version of the task as this store last returned it
        (by ``get_task``, ``create_task``, ``update_task``) in the calling context
        (the asyncio task serving the request, which the tasks it starts inherit),
        so a change that lands between a ``get_task`` and this call, by this
        process or any other, is not missed. Without such a read the baseline is
        the version as the wait starts.

        Raises:
            ValueError: no such task, or it was deleted or its TTL ran out meanwhile.

        """
        owner = self.owner_id()
        baseline = (_seen.get() or {}).get((id(self._store), owner, task_id))
        try:
            if baseline is None:
                baseline = (await self._live(task_id)).version
            record = await self._store.wait(task_id, owner_id=owner, after_version=baseline)
        except (TaskNotFound, TaskExpired):
            raise ValueError(f"Task with ID {task_id} not found") from None
        self._remember(record)

    async def notify_update(self, task_id: str) -> None:
        """Wake the task's waiters in every process (the task's version goes up by one)."""
        try:
            await self._store.set_variables(task_id, {}, owner_id=self.owner_id())
        except (TaskNotFound, TaskExpired):
            return  # nobody can be waiting for it

    # -------------------------------------------------------------------------------------

    async def _live_or_none(self, task_id: str) -> TaskRecord | None:
        try:
            record = await self._store.get(task_id, owner_id=self.owner_id())
        except TaskNotFound:
            return None
        except InvalidArgument:
            return None  # not an id this store could hold
        return None if record.is_expired() else record

    async def _live(self, task_id: str) -> TaskRecord:
        record = await self._live_or_none(task_id)
        if record is None:
            raise ValueError(f"Task with ID {task_id} not found")
        return record

    def _remember(self, record: TaskRecord) -> None:
        """Note the version this context was shown (a copy: other contexts keep theirs)."""
        key = (id(self._store), record.owner_id, record.task.task_id)
        seen = dict(_seen.get() or {})
        seen.pop(key, None)
        seen[key] = record.version
        while len(seen) > _REMEMBERED_VERSIONS:
            del seen[next(iter(seen))]
        _seen.set(seen)

    def _remembered(self, record: TaskRecord) -> Task:
        self._remember(record)
        return task_of(record)
