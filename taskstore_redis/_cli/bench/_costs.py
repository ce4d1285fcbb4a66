"""What an operation costs Redis: round trips counted client-side, and memory per task."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import anyio
import redis.asyncio
from redis.typing import EncodableT

from ..._core.backend_types import TaskKey
from ..._redis.keys import KeySchema
from ._runner import JobSpec, Target, raw_client, run_job
from ._server import Server, delete_prefix, load_scripts, memory_usage, used_memory
from ._workload import bulk_create, owner_of, tasks_for

_HASH_SAMPLE = 100
"""Task hashes whose ``MEMORY USAGE`` is averaged."""


# --- round trips ---------------------------------------------------------------------------


@dataclass
class RoundTripCounter:
    """Socket writes (round trips) and packed commands of the connections that share it."""

    round_trips: int = 0
    commands: list[str] = field(default_factory=list)

    def reset(self) -> None:
        """Forget what was counted so far."""
        self.round_trips = 0
        self.commands.clear()


def counting_connection(counter: RoundTripCounter) -> type[redis.asyncio.Connection]:
    """A ``redis.asyncio`` connection class that counts into ``counter``.

    Each ``send_packed_command`` is one write followed by reading the replies:
    one round trip, however many commands a pipeline packs into it. Each packed
    command is recorded by name. (redis-py's async cluster client always uses its
    own connection class, so round trips are counted on standalone Redis only.)
    """

    class CountingConnection(redis.asyncio.Connection):
        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            counter.round_trips += 1
            await super().send_packed_command(command, check_health)

        def pack_command(self, *args: EncodableT) -> list[bytes]:
            name = args[0]
            counter.commands.append(
                (name.decode() if isinstance(name, bytes) else str(name)).upper()
            )
            return super().pack_command(*args)

    return CountingConnection


@dataclass(frozen=True)
class RoundTrips:
    """Round trips and commands per operation, averaged over a few operations."""

    ops: int
    round_trips: float
    commands: dict[str, float]

    def as_json(self) -> dict[str, object]:
        """The counts as plain JSON."""
        return {"ops": self.ops, "round_trips": self.round_trips, "commands": self.commands}


def count_round_trips(
    target: Target, operation: str, side: str, ops: int, page_size: int, *, remember: bool = True
) -> RoundTrips:
    """Run ``ops`` operations one after another and count what their connections sent.

    Setup and warm-up (connection handshakes, script loading) are not counted:
    the counter is reset when the timed work would start.
    """
    counter = RoundTripCounter()
    spec = JobSpec(
        target=target,
        operation=operation,
        side=side,
        lanes=1,
        first_lane=0,
        ops_per_lane=ops,
        tasks_per_lane=tasks_for(operation, ops),
        duration_s=60.0,
        page_size=page_size,
        remember=remember,
    )
    job = functools.partial(
        run_job, spec, counter.reset, connection_class=counting_connection(counter)
    )
    done = anyio.run(job).ops
    names = Counter(counter.commands)
    return RoundTrips(
        ops=done,
        round_trips=counter.round_trips / done,
        commands={name: count / done for name, count in sorted(names.items())},
    )


# --- memory per task ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryFigures:
    """Redis memory taken by minimal tasks, in one layout of tasks per owner."""

    tasks: int
    tasks_per_owner: int
    used_memory_delta_per_task: float
    """Growth of INFO ``used_memory`` per task: hash, key, expiry, index entries, all."""
    hash_memory_usage_mean: float
    """Mean ``MEMORY USAGE`` of a sample of task hashes."""
    index_memory_usage_per_task: float
    """``MEMORY USAGE`` of the owners' two index sets and the due sets, per task."""
    sampled_hashes: int
    key_prefix_length: int
    owner_id_length: int

    def as_json(self) -> dict[str, object]:
        """The figures as plain JSON."""
        return {
            "tasks": self.tasks,
            "tasks_per_owner": self.tasks_per_owner,
            "key_prefix_length": self.key_prefix_length,
            "owner_id_length": self.owner_id_length,
            "used_memory_delta_per_task": round(self.used_memory_delta_per_task, 1),
            "hash_memory_usage_mean": round(self.hash_memory_usage_mean, 1),
            "index_memory_usage_per_task": round(self.index_memory_usage_per_task, 1),
            "sampled_hashes": self.sampled_hashes,
        }


def measure_memory(server: Server, target: Target, tasks: int, per_owner: int) -> MemoryFigures:
    """Create ``tasks`` minimal tasks, ``per_owner`` per owner, and measure what they take.

    The tasks go through the real create script (default TTL, no variables, no
    result). ``used_memory`` is read before and after, with the creating
    connection closed so that its buffers are not counted; other clients of the
    server would disturb it.
    """
    keys = KeySchema(target.prefix)
    owners = [owner_of(n) for n in range(math.ceil(tasks / per_owner))]
    load_scripts(server)
    before = used_memory(server)
    created = anyio.run(_create_minimal_tasks, target, keys, owners, tasks, per_owner)
    after = used_memory(server)
    sample = [
        keys.task_key(TaskKey(owner, task_id))
        for owner, task_id in created[:: max(1, len(created) // _HASH_SAMPLE)][:_HASH_SAMPLE]
    ]
    hashes = memory_usage(server, sample)
    index_keys = [
        key for owner in owners for key in (keys.index_key(owner), keys.expiry_key(owner))
    ]
    due_keys = sorted({keys.due_key(keys.shard_of(owner)) for owner in owners})
    index_bytes = sum(memory_usage(server, index_keys + due_keys))
    delete_prefix(server, target.prefix)
    return MemoryFigures(
        tasks=len(created),
        tasks_per_owner=per_owner,
        used_memory_delta_per_task=(after - before) / len(created),
        hash_memory_usage_mean=sum(hashes) / len(hashes),
        index_memory_usage_per_task=index_bytes / len(created),
        sampled_hashes=len(hashes),
        key_prefix_length=len(target.prefix),
        owner_id_length=len(owners[0]),
    )


async def _create_minimal_tasks(
    target: Target, keys: KeySchema, owners: list[str], tasks: int, per_owner: int
) -> list[tuple[str, str]]:
    client = raw_client(target)
    created: list[tuple[str, str]] = []
    try:
        for owner in owners:
            count = min(per_owner, tasks - len(created))
            created += [
                (owner, task_id) for task_id in await bulk_create(client, keys, owner, count)
            ]
    finally:
        await client.aclose()
    return created


async def create_for_listing(target: Target, owner: str, count: int) -> None:
    """Create ``count`` tasks of ``owner``, for the list-at-scale scenario."""
    client = raw_client(target)
    try:
        await bulk_create(client, KeySchema(target.prefix), owner, count)
    finally:
        await client.aclose()
