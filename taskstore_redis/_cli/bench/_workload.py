"""Each operation twice: through the async store, and as the raw redis-py commands it sends.

A *lane* is one concurrent caller (a coroutine) with an owner of its own and the
tasks it works on, so that callers never race for a task: the common case, with
no compare-and-set conflicts.

The raw side sends, for each operation, the very commands the store sends in the
common case (see ``benchmarks/README.md``): the same scripts by SHA, keys of the
same shape built by the same :class:`KeySchema`, payloads of the same size. It
leaves out the store's own work: validation, the state machine, building and
encoding the record, decoding the reply, the record memory.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..._async._pipeline import AutoPipeline
from ..._async._store import GenericTaskStore
from ..._core.backend_types import NewTask, TaskKey
from ..._core.config import StoreConfig
from ..._core.model import (
    FORMAT,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    encode_core,
    encode_variable_changes,
)
from ..._core.rules import change_status, complete, new_record
from ..._core.status import TaskStatus
from ..._redis.contract import PRUNE_BATCH, Code, create_call
from ..._redis.keys import KeySchema
from ..._redis.scripts import (
    COMPARE_AND_SET,
    CREATE,
    LIST_PAGE,
    MERGE_VARIABLES,
)

METHOD = "tools/call"
TTL_MS = 3_600_000
"""Every benchmark task lives an hour: nothing expires during a run."""
WAITING = "waiting for input"
DONE = "done"
RESULT = {"answer": 42}
POOL_TASKS = 8
"""Tasks each lane cycles over for get, update_status and set_variables."""
LIST_TASKS = 100
"""Tasks of each lane's owner in the list scenario of the matrix."""
SETUP_BATCH = 500
"""Create scripts per pipeline when setting tasks up."""
WARM_PAGE = 1000
WARM_OWNER = "bench-warm-up"
"""An owner with no tasks: listing it opens connections and touches no task."""
_RETENTION_MS = StoreConfig().expired_retention_ms


class BenchError(RuntimeError):
    """A scenario could not run, or Redis answered what the store would not expect."""


def owner_of(lane: int) -> str:
    """The owner id of lane number ``lane`` (unique across the processes of a scenario)."""
    return f"bench-owner-{lane:05d}"


def tasks_for(operation: str, ops_per_lane: int) -> int:
    """How many tasks each lane needs before the timed work starts."""
    if operation == "create":
        return 0
    if operation in ("complete_with_result", "cancel"):
        return ops_per_lane  # each ends a task of its own
    if operation == "list":
        return LIST_TASKS
    return POOL_TASKS


@dataclass
class Lane:
    """One caller's owner and tasks, and for the raw side its keys, members and core versions."""

    owner: str
    task_ids: list[str]
    task_keys: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    members: list[str] = field(default_factory=list)


class Side(Protocol):
    """One way of doing an operation: through the store, or raw."""

    async def setup(self, owners: list[str], tasks_each: int) -> None:
        """Create each lane's tasks (not timed)."""

    async def warm(self) -> None:
        """One harmless call, so that connections are open before the timing starts."""

    async def op(self, lane: int, n: int) -> None:
        """Operation number ``n`` of ``lane``: what is timed."""

    async def aclose(self) -> None:
        """Release the connections."""


async def bulk_create(
    client: Any, keys: KeySchema, owner: str, count: int, members: list[str] | None = None
) -> list[str]:
    """Create ``count`` real minimal tasks of ``owner`` through the create script, pipelined.

    Keys and arguments are those ``RedisBackend.create`` builds (no quota); task
    ``n`` is created ``count - n`` ms ago, so that creation order is index order.
    Returns the ids, oldest first (and appends their index members to ``members``).
    """
    start_ms = time.time_ns() // 1_000_000 - count
    config = StoreConfig()
    task_ids: list[str] = []
    members = [] if members is None else members
    for first in range(0, count, SETUP_BATCH):
        pipe = client.pipeline(transaction=False)
        for n in range(first, min(first + SETUP_BATCH, count)):
            created = start_ms + n
            record = new_record(owner, METHOD, TTL_MS, created, config)
            key = TaskKey(owner, record.task.task_id)
            task = NewTask(
                key=key,
                format=FORMAT,
                data=encode_core(record, created),
                created_at_ms=created,
                expires_at_ms=created + TTL_MS,
                purge_at_ms=created + TTL_MS + _RETENTION_MS,
                max_live=None,
                now_ms=created,
            )
            script_keys, args = create_call(keys, task, secrets.token_hex(6)).keys_and_args()
            pipe.execute_command("EVALSHA", CREATE.sha, len(script_keys), *script_keys, *args)
            task_ids.append(key.task_id)
            members.append(keys.index_member(key, created))
        replies = await pipe.execute()
        if any(reply != Code.OK for reply in replies):
            raise BenchError(f"bulk create of {owner!r} got {set(map(repr, replies))}")
    return task_ids


class StoreSide:
    """The operations through :class:`GenericTaskStore` (async), as an application calls it.

    On Redis the tasks are set up by :func:`bulk_create`; for the mutations the
    store is then made to remember them (one list of the owner's tasks), as a
    worker remembers the tasks it created or read: the common case, in which a
    mutation is one compare-and-set script.
    """

    def __init__(
        self,
        store: GenericTaskStore,
        operation: str,
        *,
        page_size: int,
        setup_client: Any | None,
        keys: KeySchema | None,
        remember: bool,
    ) -> None:
        """Drive ``store``; set tasks up through ``setup_client`` (None: through the store)."""
        self.store = store
        self.lanes: list[Lane] = []
        self._page_size = page_size
        self._setup_client = setup_client
        self._keys = keys
        self._remember = remember
        self._op = {
            "create": self._create,
            "get": self._get,
            "update_status": self._update_status,
            "set_variables": self._set_variables,
            "complete_with_result": self._complete_with_result,
            "list": self._list,
            "cancel": self._cancel,
        }[operation]

    async def setup(self, owners: list[str], tasks_each: int) -> None:
        """Create each lane's tasks, and remember them if asked."""
        for owner in owners:
            if self._setup_client is None or self._keys is None:
                created = [
                    await self.store.create(METHOD, owner_id=owner) for _ in range(tasks_each)
                ]
                task_ids = [record.task.task_id for record in created]
            else:
                task_ids = await bulk_create(self._setup_client, self._keys, owner, tasks_each)
                if self._remember and task_ids:
                    await self._read_all(owner, tasks_each)
            self.lanes.append(Lane(owner=owner, task_ids=task_ids))

    async def _read_all(self, owner: str, count: int) -> None:
        cursor = None
        for _ in range(count // WARM_PAGE + 1):
            page = await self.store.list(owner_id=owner, cursor=cursor, limit=WARM_PAGE)
            cursor = page.next_cursor
            if cursor is None:
                return

    async def warm(self) -> None:
        """List an owner that has no task."""
        await self.store.list(owner_id=WARM_OWNER, limit=1)

    async def op(self, lane: int, n: int) -> None:
        """Run operation ``n`` of ``lane``."""
        await self._op(self.lanes[lane], n)

    async def aclose(self) -> None:
        """Close the store and the setup client."""
        try:
            await self.store.aclose()
        finally:
            if self._setup_client is not None:
                await self._setup_client.aclose()

    async def _create(self, lane: Lane, n: int) -> None:
        await self.store.create(METHOD, owner_id=lane.owner)

    async def _get(self, lane: Lane, n: int) -> None:
        await self.store.get(lane.task_ids[n % len(lane.task_ids)], owner_id=lane.owner)

    async def _update_status(self, lane: Lane, n: int) -> None:
        pool = len(lane.task_ids)
        if (n // pool) % 2 == 0:
            status, message = TaskStatus.INPUT_REQUIRED, WAITING
        else:
            status, message = TaskStatus.WORKING, None
        await self.store.update_status(
            lane.task_ids[n % pool], status, message, owner_id=lane.owner
        )

    async def _set_variables(self, lane: Lane, n: int) -> None:
        task_id = lane.task_ids[n % len(lane.task_ids)]
        await self.store.set_variables(task_id, {"progress": n}, owner_id=lane.owner)

    async def _complete_with_result(self, lane: Lane, n: int) -> None:
        await self.store.complete_with_result(
            lane.task_ids[n], TaskStatus.COMPLETED, DONE, RESULT, owner_id=lane.owner
        )

    async def _list(self, lane: Lane, n: int) -> None:
        await self.store.list(owner_id=lane.owner, limit=self._page_size)

    async def _cancel(self, lane: Lane, n: int) -> None:
        await self.store.cancel(lane.task_ids[n], owner_id=lane.owner)


def representative_payloads() -> dict[str, bytes]:
    """The core record bytes each operation writes, built once by the store's own rules.

    The raw side sends these (their size is what matters to Redis) instead of
    building a record per call; ``set_variables`` sends only the one variable.
    """
    config = StoreConfig()
    now = time.time_ns() // 1_000_000
    record = new_record(owner_of(0), METHOD, TTL_MS, now, config)
    return {
        "create": encode_core(record, now),
        "update_status": encode_core(
            change_status(record, TaskStatus.INPUT_REQUIRED, WAITING, now), now
        ),
        "complete_with_result": encode_core(
            complete(record, TaskStatus.COMPLETED, DONE, RESULT, now), now
        ),
        "cancel": encode_core(change_status(record, TaskStatus.CANCELLED, None, now), now),
    }


VARIABLE_MERGE = encode_variable_changes({"progress": 10**6})[0][0]
"""The one (key, value) pair that the set_variables scenario merges, as canonical JSON."""


class RawSide:
    """The same commands through a plain ``redis.asyncio`` client and the same pipelining.

    Commands go through an :class:`AutoPipeline` set like the store's (coalescing
    on or off), so that both sides share one transport and the ratio measures the
    store's own work only.
    """

    def __init__(
        self,
        client: Any,
        operation: str,
        *,
        keys: KeySchema,
        page_size: int,
        auto_pipeline: bool,
    ) -> None:
        """Send ``operation``'s commands through ``client``."""
        self.lanes: list[Lane] = []
        self._client = client
        self._keys = keys
        self._page_size = page_size
        self._pipeline = AutoPipeline(enabled=auto_pipeline)
        self._payloads = representative_payloads()
        self._shapes: list[_OwnerKeys] = []
        self._op = {
            "create": self._create,
            "get": self._get,
            "update_status": self._update_status,
            "set_variables": self._set_variables,
            "complete_with_result": self._complete_with_result,
            "list": self._list,
            "cancel": self._cancel,
        }[operation]
        self._cas_payload = self._payloads.get(operation, b"")
        self._max_variable_bytes = StoreConfig().max_variable_size_bytes

    async def setup(self, owners: list[str], tasks_each: int) -> None:
        """Create each lane's tasks with the create script; note their keys and versions."""
        for owner in owners:
            members: list[str] = []
            task_ids = await bulk_create(self._client, self._keys, owner, tasks_each, members)
            keys = [self._keys.task_key(TaskKey(owner, task_id)) for task_id in task_ids]
            self.lanes.append(
                Lane(
                    owner=owner,
                    task_ids=task_ids,
                    task_keys=keys,
                    versions=[1] * len(keys),
                    members=members,
                )
            )
            self._shapes.append(_OwnerKeys.of(self._keys, owner))

    async def warm(self) -> None:
        """List an owner that has no task."""
        keys = self._keys
        await self._send(
            "EVALSHA",
            LIST_PAGE.sha,
            2,
            keys.index_key(WARM_OWNER),
            keys.task_prefix(WARM_OWNER),
            "+",
            1,
            68,
        )

    async def op(self, lane: int, n: int) -> None:
        """Run operation ``n`` of ``lane``."""
        await self._op(lane, n)

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()

    async def _send(self, *args: Any) -> Any:
        return await self._pipeline.execute(self._client, *args)

    async def _create(self, lane: int, n: int) -> None:
        shape = self._shapes[lane]
        now = time.time_ns() // 1_000_000
        task_id = f"{shape.new_task_id}{n:012x}"
        reply = await self._send(
            "EVALSHA",
            CREATE.sha,
            5,
            shape.task_prefix + task_id,
            shape.index_key,
            shape.expiry_key,
            shape.due_key,
            shape.task_prefix,
            FORMAT,
            self._payloads["create"],
            f"{now:015d}:{task_id}",
            now + TTL_MS,
            now + TTL_MS + _RETENTION_MS,
            "",
            now,
            shape.due_member,
            PRUNE_BATCH,
            f"{n:016x}",
        )
        if reply != Code.OK:
            raise BenchError(f"raw create got {reply!r}")

    async def _get(self, lane: int, n: int) -> None:
        keys = self.lanes[lane].task_keys
        await self._send("HGETALL", keys[n % len(keys)])

    async def _compare_and_set(self, lane: int, index: int, n: int, *, terminal: bool) -> None:
        state = self.lanes[lane]
        reply = await self._send(
            "EVALSHA",
            COMPARE_AND_SET.sha,
            2,
            state.task_keys[index],
            self._shapes[lane].expiry_key,
            state.versions[index],
            self._cas_payload,
            f"{n:016x}",
            time.time_ns() // 1_000_000,
            state.members[index] if terminal else "",
            FORMAT_MAJOR,
            FORMAT_MINOR,
        )
        if int(reply[0]) != Code.OK:
            raise BenchError(f"raw compare-and-set got {reply!r}")
        state.versions[index] += 1

    async def _update_status(self, lane: int, n: int) -> None:
        count = len(self.lanes[lane].task_keys)
        await self._compare_and_set(lane, n % count, n, terminal=False)

    async def _set_variables(self, lane: int, n: int) -> None:
        keys = self.lanes[lane].task_keys
        name, value = VARIABLE_MERGE
        reply = await self._send(
            "EVALSHA",
            MERGE_VARIABLES.sha,
            1,
            keys[n % len(keys)],
            FORMAT_MAJOR,
            time.time_ns() // 1_000_000,
            self._max_variable_bytes,
            f"{n:016x}",
            "",  # no lease fence
            "",
            1,
            name,
            value,
        )
        if int(reply[0]) != Code.OK:
            raise BenchError(f"raw merge got {reply!r}")

    async def _complete_with_result(self, lane: int, n: int) -> None:
        await self._compare_and_set(lane, n, n, terminal=True)

    async def _cancel(self, lane: int, n: int) -> None:
        await self._compare_and_set(lane, n, n, terminal=True)

    async def _list(self, lane: int, n: int) -> None:
        size = self._page_size
        shape = self._shapes[lane]
        await self._send(
            "EVALSHA",
            LIST_PAGE.sha,
            2,
            shape.index_key,
            shape.task_prefix,
            "+",
            size,
            4 * size + 64,
        )


@dataclass(frozen=True)
class _OwnerKeys:
    """The key names of one owner that the raw create sends, built once."""

    index_key: str
    expiry_key: str
    due_key: str
    due_member: str
    task_prefix: str
    new_task_id: str
    """A task id without its last 12 hex digits: ids keep the shape of a UUID."""

    @classmethod
    def of(cls, keys: KeySchema, owner: str) -> _OwnerKeys:
        stem = str(uuid.uuid4())[:24]
        return cls(
            index_key=keys.index_key(owner),
            expiry_key=keys.expiry_key(owner),
            due_key=keys.due_key(keys.shard_of(owner)),
            due_member=keys.due_member(owner),
            task_prefix=keys.task_prefix(owner),
            new_task_id=stem,
        )
