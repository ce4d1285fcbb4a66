"""RedisBackend: task records in Redis or Redis Cluster, every write one Lua script."""

from __future__ import annotations

import functools
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.retry
import redis.exceptions
from redis.backoff import NoBackoff

from .._core.backend_types import (
    BackendPage,
    CasResult,
    ClaimReply,
    CoreWrite,
    Created,
    DeleteOutcome,
    LeasedJob,
    LeaseRef,
    ListPosition,
    MergeResult,
    NewTask,
    QueueCounts,
    RenewOutcome,
    TaskKey,
    TaskRemoval,
    VariableMerge,
    VersionedRecord,
)
from .._core.errors import InvalidArgument, StorageCorrupted, StoreUnavailable
from .._core.schedules import ScheduleFire, StoredSchedule
from .._redis.closing import disconnect_cluster_nodes
from .._redis.contract import (
    Call,
    claim_call,
    compare_and_set_call,
    complete_and_claim_call,
    create_call,
    delete_call,
    fire_call,
    limits_call,
    list_page_call,
    merge_variables_call,
    pause_call,
    purge_expired_call,
    queue_due_call,
    queue_leases_call,
    queue_stats_call,
    recover_call,
    release_call,
    renew_call,
    schedule_call,
    schedule_name_call,
    schedules_due_call,
    unschedule_call,
)
from .._redis.errors import map_redis_errors, may_pass, script_sha
from .._redis.events import ConnectionEvents
from .._redis.keys import KeySchema, decode_id, encode_id
from .._redis.options import ClientOptions, check_parsed, check_url, socket_seconds
from .._redis.pubsub import AsyncHub, async_hub, node_source
from .._redis.replies import (
    as_str,
    cas_result,
    claim_reply,
    complete_and_claim_reply,
    create_outcome,
    created,
    delete_outcome,
    fire_outcome,
    merge_result,
    page_records,
    record_of_hash,
    release_reply,
    renew_outcome,
    stored_schedule,
    wrote,
)
from .._redis.routing import pipeline_route
from .._redis.scripts import ALL_SCRIPTS
from .._runtime.shield import async_shielded
from ._guard import check_server
from ._pipeline import AutoPipeline
from ._watch import ChannelWatch, QueueChannelWatch

_MAX_CONNECTIONS = 100
"""Connections a store opens to a standalone server at most (redis-py's default cap); more
concurrent calls wait for one (``BlockingConnectionPool``)."""
_PURGE_BATCH = 500
"""Index entries one purge script visits at most, far below the server's busy threshold."""
_WRITE_ATTEMPTS = 2
_NOSCRIPT_ATTEMPTS = 5
"""Sends of a call whose script the server lost (NOSCRIPT), each after a reload."""
_LONGEST_WAIT_MS = 2**53
"""``wait_timeout_ms`` is cut to this (285,000 years): Redis refuses a ``WAIT`` whose
deadline does not fit in 64 bits."""
_OWN_OPTIONS = (
    "cluster",
    "prefix",
    "shards",
    "socket_timeout",
    "socket_connect_timeout",
    "read_retries",
    "wait_replicas",
    "wait_timeout_ms",
    "auto_pipeline",
)
"""The options of ``from_url`` itself; any other goes to the redis-py client."""


@functools.cache
def client_options() -> ClientOptions:
    """The options redis-py's clients take, read from their signatures once."""
    return ClientOptions(
        [
            redis.asyncio.Redis,
            redis.asyncio.BlockingConnectionPool,
            redis.asyncio.Connection,
            redis.asyncio.SSLConnection,
            redis.asyncio.UnixDomainSocketConnection,
        ],
        redis.asyncio.RedisCluster,
    )


class RedisBackend:
    """A StorageBackend on Redis (standalone or Cluster) through redis-py.

    Every write is one atomic Lua script called by SHA and reloaded on NOSCRIPT;
    a read is one command or one read-only script. Keys follow
    :class:`~taskstore_redis._keys.KeySchema`: all keys of an owner share one hash
    tag, so the same code runs on Redis Cluster. A write whose reply was lost is
    resent once with the same write token, which the scripts recognise, so it is
    never applied twice; if the outcome still cannot be known the call raises
    ``StoreUnavailable`` with ``outcome_unknown`` set.
    """

    _client: redis.asyncio.Redis | redis.asyncio.RedisCluster | None

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster,
        *,
        prefix: str = "taskstore",
        shards: int = 16,
        read_retries: int = 2,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        auto_pipeline: bool = True,
    ) -> None:
        """Wrap a redis-py client the caller already has (standalone or cluster).

        Args:
            client: the redis-py client; the backend closes it on ``aclose``.
                It must not be used after a fork: build a new backend in each process.
            prefix: the key prefix, inside every key's hash tag.
            shards: how many hash tags the owners are spread over.
            read_retries: how many times a read is retried after a connection error.
            wait_replicas: after each write, wait until this many replicas have
                acknowledged it (Redis ``WAIT``); 0 does not wait.
            wait_timeout_ms: how long ``WAIT`` may take before the write is reported
                as not durable (``StoreUnavailable`` with ``outcome_unknown``).
            auto_pipeline: send the commands that concurrent callers issue at the
                same moment in one pipelined round trip.

        """
        self._setup(None, {}, isinstance(client, redis.asyncio.RedisCluster), prefix, shards)
        self._client = client
        self._configure(read_retries, wait_replicas, wait_timeout_ms, auto_pipeline)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool | None = None,
        prefix: str = "taskstore",
        shards: int = 16,
        socket_timeout: float | None = 5.0,
        socket_connect_timeout: float | None = 5.0,
        read_retries: int = 2,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        auto_pipeline: bool = True,
        **options: Any,
    ) -> RedisBackend:
        """Connect to ``redis://``, ``rediss://`` (TLS), ``unix://`` or any node of a cluster.

        Cluster mode is detected from the server on first use, or forced with
        ``cluster=True`` / ``cluster=False``. No call waits longer than the
        socket timeouts (seconds; None or ``inf``: no limit). Extra ``options`` go to
        the redis-py client. The client is built on first use, and again in a child
        process after a fork. The other arguments are those of the constructor.

        Raises:
            InvalidArgument: a malformed URL, or an option (or URL query option) that
                neither this method nor redis-py's client takes; the message names it
                and what is accepted, and shows the URL without its credentials.

        """
        if cluster is not None and not isinstance(cluster, bool):
            raise InvalidArgument(f"cluster must be True, False or None, got {cluster!r}")
        check_url(url, client_options(), cluster)
        check_parsed(url, redis.asyncio.connection.parse_url)
        client_options().check(options, cluster, _OWN_OPTIONS)
        backend = cls.__new__(cls)
        options = {
            "socket_timeout": socket_seconds("socket_timeout", socket_timeout),
            "socket_connect_timeout": socket_seconds(
                "socket_connect_timeout", socket_connect_timeout
            ),
            **options,
        }
        backend._setup(url, options, cluster, prefix, shards)
        backend._configure(read_retries, wait_replicas, wait_timeout_ms, auto_pipeline)
        return backend

    def _setup(
        self,
        url: str | None,
        options: dict[str, Any],
        cluster: bool | None,
        prefix: str,
        shards: int,
    ) -> None:
        self._client = None
        self._url = url
        self._url_options = options
        self._cluster = cluster
        self._pid = os.getpid()
        self._closed = False
        self.keys = KeySchema(prefix, shards)
        self._hub: AsyncHub | None = None
        self._hub_lock = threading.Lock()
        self._check_due = True  # the configuration guard: see _check_server
        self._require_noeviction = False
        self._events = ConnectionEvents()

    def _configure(
        self, read_retries: int, wait_replicas: int, wait_timeout_ms: int, auto_pipeline: bool
    ) -> None:
        for name, value in (
            ("read_retries", read_retries),
            ("wait_replicas", wait_replicas),
            ("wait_timeout_ms", wait_timeout_ms),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"{name} must be an int >= 0, got {value!r}")
        self._read_retries = read_retries
        self._wait_replicas = wait_replicas
        # WAIT takes a 64-bit deadline: a longer timeout means as long as it can be
        self._wait_timeout_ms = min(wait_timeout_ms, _LONGEST_WAIT_MS)
        self._pipeline = AutoPipeline(enabled=bool(auto_pipeline))

    def require_noeviction(self) -> None:
        """Refuse to work on a node whose ``maxmemory-policy`` is not ``noeviction``.

        From then on every call raises ``ServerMisconfigured`` (nothing sent) if a
        node's policy is another one or cannot be read; without this such a node is
        logged as a warning once per process. ``StoreConfig(require_noeviction=True)``
        calls it.
        """
        self._require_noeviction = True
        self._check_due = True

    @property
    def client(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster | None:
        """The redis-py client, or None before the first call of a backend built by URL."""
        return self._client

    async def get(self, key: TaskKey) -> VersionedRecord | None:
        """Read a task hash in one command (HGETALL)."""
        reply = await self._run(
            "get", ("HGETALL", self.keys.task_key(key)), attempts=self._read_retries + 1
        )
        return record_of_hash(reply)

    async def get_many(self, keys: list[TaskKey]) -> list[VersionedRecord | None]:
        """Read task hashes in one pipeline (HGETALL each)."""
        commands = [("HGETALL", self.keys.task_key(key)) for key in keys]
        replies = await self._run_many("get_many", commands, write=False)
        return [record_of_hash(reply) for reply in replies]

    async def create(self, task: NewTask) -> Created:
        """Write and index a new record in one script, within the owner's quota."""
        call = create_call(self.keys, task, secrets.token_hex(6))
        return create_outcome(await self._write("create", call, wrote=created))

    async def compare_and_set(self, write: CoreWrite) -> CasResult:
        """Replace the core record if its core version matches, in one script."""
        call = compare_and_set_call(self.keys, write, secrets.token_hex(6))
        return cas_result(await self._write("compare_and_set", call, wrote=wrote))

    async def merge_variables(self, merge: VariableMerge) -> MergeResult:
        """Set and delete the variables named, in one script with no version check."""
        call = merge_variables_call(self.keys, merge, secrets.token_hex(6))
        return merge_result(await self._write("merge_variables", call, wrote=wrote))

    async def list_page(self, owner_id: str, after: ListPosition | None, limit: int) -> BackendPage:
        """Read one page of the owner's index and its records in one script."""
        call = list_page_call(self.keys, owner_id, after, limit)
        reply = await self._run("list_page", call.command(), attempts=self._read_retries + 1)
        last_member = as_str(reply.pop())
        return BackendPage(
            page_records(reply), self.keys.position_of(last_member) if last_member else None
        )

    async def in_progress(self, owner_id: str, now_ms: int) -> int:
        """Count the owner's expiry index above ``now_ms`` (one ZCOUNT, as ``create`` does)."""
        reply = await self._run(
            "in_progress",
            ("ZCOUNT", self.keys.expiry_key(owner_id), f"({now_ms}", "+inf"),
            attempts=self._read_retries + 1,
        )
        return int(reply)

    async def purge_expired(self, now_ms: int) -> int:
        """Delete expired tasks shard by shard, in bounded batches."""
        purged = 0
        for shard in range(self.keys.shards):
            more = True
            while more:
                call = purge_expired_call(self.keys, shard, now_ms, _PURGE_BATCH)
                deleted, due = await self._run("purge_expired", call.command(), write=True)
                purged += int(deleted)
                more = bool(int(due))
        return purged

    # --- work queues (one script per shard of a queue; see lua/claim.lua) ------------------

    def queue_shards(self) -> int:
        """Every queue is spread over the key schema's shards (its tasks' owners' shards)."""
        return self.keys.shards

    async def claim(
        self, queue: str, shard: int, count: int, lease_ms: int, worker_id: str, batch: int
    ) -> ClaimReply:
        """Recover expired leases, then lease up to ``count`` ready tasks: one script.

        Never resent: a claim whose reply was lost leases tasks nobody holds, which
        their lease's expiry gives back.
        """
        call = claim_call(
            self.keys,
            queue,
            shard,
            count=count,
            lease_ms=lease_ms,
            worker_id=worker_id,
            batch=batch,
        )
        return claim_reply(await self._run("claim", call.command(), write=True))

    async def complete_and_claim(
        self,
        queue: str,
        shard: int,
        writes: list[CoreWrite],
        count: int,
        lease_ms: int,
        worker_id: str,
        batch: int,
    ) -> tuple[list[CasResult], ClaimReply]:
        """Complete leases of one shard and claim replacements: one script.

        Never resent, as a claim: a lost reply is ``StoreUnavailable`` with the outcome
        unknown; each write carries its own token, so the holder may send it again alone.
        """
        call = complete_and_claim_call(
            self.keys,
            queue,
            shard,
            [(write, secrets.token_hex(6)) for write in writes],
            count=count,
            lease_ms=lease_ms,
            worker_id=worker_id,
            batch=batch,
        )
        reply = await self._run("complete_and_claim", call.command(), write=True)
        return complete_and_claim_reply(reply)

    async def recover(self, queue: str, shard: int, batch: int) -> ClaimReply:
        """Recover up to ``batch`` expired leases of one shard: one script."""
        call = recover_call(self.keys, queue, shard, batch)
        return claim_reply(await self._run("recover", call.command(), write=True))

    async def renew(self, leases: list[LeaseRef], lease_ms: int) -> list[RenewOutcome]:
        """Renew leases, one script per shard of a queue, all in one pipeline."""
        groups: dict[tuple[str, int], list[int]] = {}
        for at, ref in enumerate(leases):
            groups.setdefault((ref.queue, self.keys.shard_of(ref.key.owner_id)), []).append(at)
        commands = [
            renew_call(self.keys, queue, shard, [leases[at] for at in members], lease_ms).command()
            for (queue, shard), members in groups.items()
        ]
        replies = await self._run_many("renew", commands, write=True)
        outcomes: list[RenewOutcome] = [RenewOutcome(None, "missing")] * len(leases)
        for members, reply in zip(groups.values(), replies, strict=True):
            for at, outcome in zip(members, reply, strict=True):
                outcomes[at] = renew_outcome(outcome)
        return outcomes

    async def release(
        self, lease: LeaseRef, delay_ms: int, *, count_attempt: bool = True
    ) -> tuple[str, VersionedRecord | None]:
        """Hand a held lease back, in one script (``count_attempt`` False: the attempt too)."""
        call = release_call(
            self.keys, lease, delay_ms, secrets.token_hex(6), count_attempt=count_attempt
        )
        return release_reply(await self._write("release", call, wrote=wrote))

    async def queue_due(self, queue: str, shards: list[int]) -> list[float | None]:
        """Per shard, ms until it needs a claim (0: now; None: empty), in one pipeline."""
        commands = [queue_due_call(self.keys, queue, shard).command() for shard in shards]
        replies = await self._run_many("queue_due", commands, write=False)
        return [float(text) if (text := as_str(reply)) else None for reply in replies]

    async def queue_counts(self, queue: str) -> QueueCounts:
        """The queue's numbers: one read-only script per shard, in one pipeline."""
        commands = [
            queue_stats_call(self.keys, queue, shard).command() for shard in range(self.keys.shards)
        ]
        ready = queued = leased = waiting = 0
        oldest: float | None = None
        counters: dict[str, int] = {}
        for now_ready, in_all, held, age, flat, parked in await self._run_many(
            "queue_stats", commands, write=False
        ):
            ready += int(now_ready)
            queued += int(in_all)
            leased += int(held)
            waiting += int(parked)
            age_text = as_str(age)
            if age_text:
                oldest = max(oldest or 0.0, float(age_text))
            for at in range(0, len(flat), 2):
                name = as_str(flat[at])
                counters[name] = counters.get(name, 0) + int(flat[at + 1])
        return QueueCounts(
            ready=ready,
            delayed=queued - ready,
            leased=leased,
            oldest_ready_age_ms=oldest,
            counters=counters,
            waiting=waiting,
        )

    async def queue_leases(self, queue: str, limit: int) -> list[LeasedJob]:
        """Up to ``limit`` leases per shard, soonest deadline first: one script per shard."""
        commands = [
            queue_leases_call(self.keys, queue, shard, limit).command()
            for shard in range(self.keys.shards)
        ]
        leases = [
            LeasedJob(
                key=TaskKey(as_str(owner), KeySchema.task_id_of_member(as_str(member))),
                worker_id=as_str(worker),
                attempt=int(attempt),
                deadline_ms=float(deadline),
                lost=as_str(state) in ("x", "y"),
            )
            for reply in await self._run_many("queue_leases", commands, write=False)
            for member, owner, worker, attempt, deadline, state in reply
        ]
        return sorted(leases, key=lambda lease: lease.deadline_ms)

    async def queue_names(self) -> list[str]:
        """The names in every shard's set of queues (one pipeline)."""
        commands = [("SMEMBERS", self.keys.queues_key(shard)) for shard in range(self.keys.shards)]
        names: set[str] = set()
        for members in await self._run_many("queues", commands, write=False):
            names.update(as_str(member) for member in members)
        return sorted(names)

    async def create_many(self, tasks: list[NewTask]) -> list[Created]:
        """Create each task in one script of its own, all in one pipeline.

        After a lost connection the same calls are sent again, once: each script
        recognises its own write token, so a create that landed reports itself
        again and none is applied twice. With ``wait_replicas`` one at a time.
        """
        if self._wait_replicas:
            return [await self.create(task) for task in tasks]
        commands = [create_call(self.keys, task, secrets.token_hex(6)).command() for task in tasks]
        attempt = 0
        while True:
            attempt += 1
            try:
                replies = await self._run_many("submit_many", commands, write=True)
            except StoreUnavailable as exc:
                if attempt < _WRITE_ATTEMPTS and may_pass(exc.__cause__):
                    continue
                raise StoreUnavailable(
                    f"submit_many: {len(tasks)} creates may or may not have been applied: {exc}",
                    outcome_unknown=True,
                ) from exc
            return [create_outcome(reply) for reply in replies]

    async def set_limits(self, queue: str, group: str | None, limits: dict[str, float]) -> None:
        """Set limits on every shard of ``queue``: one script per shard, in one pipeline.

        Sent again after a lost reply: setting the same limits twice changes nothing.
        """
        commands = [
            limits_call(self.keys, queue, shard, group, limits).command()
            for shard in range(self.keys.shards)
        ]
        await self._run_many("set_limits", commands, write=True)

    async def queue_limits(self, queue: str) -> dict[str, float]:
        """The limits of ``queue``, read from its first shard (every shard holds the same)."""
        reply = await self._run(
            "limits",
            ("HGETALL", self.keys.limits_key(queue, 0)),
            attempts=self._read_retries + 1,
        )
        flat = (
            [part for pair in reply.items() for part in pair] if isinstance(reply, dict) else reply
        )
        pairs = zip(flat[::2], flat[1::2], strict=True)
        limits: dict[str, float] = {}
        for name, value in pairs:
            kind, _, group = as_str(name).partition(":")
            if kind not in ("c", "r", "b"):
                continue  # the scripts' own count of group fields
            limits[kind + (":" + decode_id(group) if group else "")] = float(value)
        return limits

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume every shard of ``queue``: one script per shard, in one pipeline.

        Sent again after a lost reply: pausing (or resuming) twice changes nothing.
        """
        commands = [
            pause_call(self.keys, queue, shard, paused).command()
            for shard in range(self.keys.shards)
        ]
        await self._run_many("pause" if paused else "resume", commands, write=True)

    def queue_watch(self, queue: str, on_notice: Callable[[int], None]) -> QueueChannelWatch:
        """Watch every shard channel of ``queue`` through this process's hub."""
        channels = [self.keys.queue_channel(queue, shard) for shard in range(self.keys.shards)]
        return QueueChannelWatch(self, channels, on_notice)

    # --- schedules (each in its owner's shard; names in a hash of their own) ---------------

    async def server_time_ms(self) -> int:
        """The server's clock (``TIME``), in ms."""
        seconds, micros = await self._run("time", ("TIME",), attempts=self._read_retries + 1)
        return int(seconds) * 1000 + int(micros) // 1000

    async def schedule_name(self, name: str, owner_id: str, *, remove: bool) -> str | None:
        """Claim the name for the owner if free (or give it up): one script; its holder after.

        Sent again after a lost reply: claiming (or giving up) twice changes nothing.
        """
        call = schedule_name_call(self.keys, name, owner_id, remove=remove)
        holder = as_str(await self._write("schedule_name", call, wrote=_always))
        return holder or None

    async def schedule_owner(self, name: str) -> str | None:
        """The owner holding the schedule name (one HGET), or None."""
        reply = await self._run(
            "schedule_owner",
            ("HGET", self.keys.schedule_names_key(), encode_id(name)),
            attempts=self._read_retries + 1,
        )
        return None if reply is None else as_str(reply)

    async def put_schedule(
        self, owner_id: str, name: str, spec: bytes, next_ms: int
    ) -> StoredSchedule:
        """Create or update the schedule: one script, sent again after a lost reply."""
        call = schedule_call(self.keys, owner_id, name, spec, next_ms)
        stored = stored_schedule(name, await self._write("schedule", call, wrote=_always))
        if stored is None:
            raise StorageCorrupted(f"schedule {name!r} was not stored")
        return stored

    async def remove_schedule(self, owner_id: str, name: str) -> bool:
        """Delete the schedule: one script, sent again after a lost reply."""
        call = unschedule_call(self.keys, owner_id, name)
        return bool(int(await self._write("unschedule", call, wrote=_always)))

    async def due_schedules(
        self, until_ms: float, limit: int
    ) -> tuple[list[StoredSchedule], float | None]:
        """Each shard's schedules due by ``until_ms``: one read-only script per shard, pipelined."""
        commands = [
            schedules_due_call(self.keys, shard, until_ms, limit).command()
            for shard in range(self.keys.shards)
        ]
        found: list[StoredSchedule] = []
        earliest: float | None = None
        for reply in await self._run_many("schedules_due", commands, write=False):
            first = as_str(reply[0])
            if first:
                earliest = float(first) if earliest is None else min(earliest, float(first))
            for member, flat in reply[1:]:
                stored = stored_schedule(decode_id(as_str(member)), flat)
                if stored is not None:
                    found.append(stored)
        return found, earliest

    async def fire_schedule(
        self, owner_id: str, stored: StoredSchedule, step: ScheduleFire, task: NewTask | None
    ) -> Created | None:
        """One step of the schedule, its task created in the same script; sent once.

        A resend could only find the step taken, so a lost reply is ``StoreUnavailable``
        with the outcome unknown.
        """
        call = fire_call(self.keys, owner_id, stored, step, task, secrets.token_hex(6))
        return fire_outcome(await self._run("fire", call.command(), write=True))

    def schedule_watch(self, on_notice: Callable[[int], None]) -> QueueChannelWatch:
        """Watch every shard's schedules channel through this process's hub."""
        channels = [self.keys.schedules_key(shard) for shard in range(self.keys.shards)]
        return QueueChannelWatch(self, channels, on_notice)

    async def _run_many(
        self, operation: str, commands: list[tuple[Any, ...]], *, write: bool
    ) -> list[Any]:
        """Send commands in one pipeline (one round trip per node); scripts reloaded if lost."""
        if not commands:
            return []
        mapped = map_redis_errors(operation, write=write)
        with mapped:
            client = await self._connected()
            untyped: Any = client  # redis-py leaves pipelines partly untyped
            for _ in range(_NOSCRIPT_ATTEMPTS):
                async with untyped.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command, **pipeline_route(client, command))
                    replies: list[Any] = await pipe.execute(raise_on_error=False)
                lost = {
                    script_sha(command)
                    for command, reply in zip(commands, replies, strict=True)
                    if isinstance(reply, redis.exceptions.NoScriptError)
                }
                if not lost:
                    break
                await self._load_scripts(client, lost)
            for command, reply in zip(commands, replies, strict=True):
                if isinstance(reply, Exception):
                    mapped.sha = script_sha(command)
                    raise reply
            return replies

    async def delete(self, removal: TaskRemoval) -> DeleteOutcome:
        """Remove a task and its index entries in one script, if its core is as read.

        Sent once: after a lost reply the task may or may not be gone, and
        ``StoreUnavailable`` says ``outcome_unknown``.
        """
        call = delete_call(self.keys, removal)
        return delete_outcome(await self._run("delete", call.command(), write=True))

    # --- waiting (see _redis/pubsub.py) ---------------------------------------------------

    def watch(self, key: TaskKey) -> ChannelWatch:
        """Watch one task's shard channel, on this process's one connection per node."""
        return ChannelWatch(self, self.keys.channel(key))

    async def watch_hub(self) -> AsyncHub:
        """The subscriber of this backend, process and event loop, built on first use."""
        with map_redis_errors("subscribing to changes", write=False):
            client = await self._connected()
        with self._hub_lock:  # threads of the blocking API: one hub, one listener thread
            if self._hub is None or not self._hub.usable():
                self._hub = async_hub(node_source(client))
            return self._hub

    async def spublish(self, channel: str, message: str) -> int:
        """Publish ``message`` on the shard channel ``channel`` (``SPUBLISH``); sent once.

        Returns how many subscribers of the channel's node got it. Never resent after
        a lost reply (a message published twice would be delivered twice); errors
        become StoreUnavailable.
        """
        reply = await self._run("spublish", ("SPUBLISH", channel, message))
        return int(reply)

    def watch_registrations(self) -> int:
        """How many waiters are registered now (for tests and diagnostics)."""
        return 0 if self._hub is None else self._hub.subscriber.registrations()

    # -------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the redis-py client and its connections; later calls raise StoreUnavailable."""
        self._closed = True
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.aclose()
        client, self._client = self._client, None
        if client is not None:
            with map_redis_errors("close", write=False):
                await client.aclose()
                disconnect_cluster_nodes(client)

    async def _connected(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        client = await self._client_now()
        if self._check_due:
            await self._check_server(client)
        return client

    async def _check_server(self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster) -> None:
        """The configuration guard (see ``_redis/guard.py``): each node's eviction policy.

        Asks only nodes this process has not asked yet, so it costs one ``INFO memory``
        per node and process; it runs on the first call, after a connection error
        (a failover may bring a new primary) and after ``require_noeviction``.
        """
        self._check_due = False
        try:
            await check_server(client, require_noeviction=self._require_noeviction)
        except BaseException:
            self._check_due = True
            raise

    async def _client_now(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        if self._pid != os.getpid():
            self._forked()
        if self._closed:
            raise StoreUnavailable("the RedisBackend is closed")
        if self._client is not None:
            return self._client
        assert self._url is not None, "a backend without a URL always has its client"
        client = await self._connect(self._url)
        if self._client is None:
            self._client = client
        else:  # another caller connected first
            with async_shielded():
                await client.aclose()
            disconnect_cluster_nodes(client)
        return self._client

    def _forked(self) -> None:
        """Never touch the parent's sockets in a child: reconnect, or refuse if we cannot."""
        if self._url is None:
            raise StoreUnavailable(
                f"this RedisBackend wraps a client made in process {self._pid} and cannot be "
                "used after a fork; build the store in each worker process (for example "
                "with GenericTaskStore.from_url in the pool's initializer)"
            )
        self._client = None  # the parent's client: dropped, not closed
        self._pipeline = AutoPipeline(enabled=self._pipeline.enabled)  # its queue is the parent's
        self._hub_lock = threading.Lock()  # the parent's hub and its thread are not ours
        self._check_due = True  # the guard's memory is per process
        self._pid = os.getpid()

    async def _connect(self, url: str) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        options = self._url_options
        if self._cluster is None:
            probe = redis.asyncio.Redis.from_url(url, **options)
            try:
                info = await probe.info("cluster")
            finally:
                with async_shielded():  # closed even when the caller is being cancelled
                    await probe.aclose()
            cluster = bool(info.get("cluster_enabled"))
            # from_url checked the options against both kinds of client: now the one it is
            query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
            client_options().check(
                (name for name, _ in query), cluster, where=" in the URL's query"
            )
            client_options().check(options, cluster, _OWN_OPTIONS)
            self._cluster = cluster
        # no retries inside redis-py: a retry there would hide that an earlier attempt was
        # sent (its last error, a refused connect, says "not sent"); _run resends, knowing
        no_retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if self._cluster:
            return redis.asyncio.RedisCluster.from_url(url, **{"retry": no_retry, **options})
        # a blocking pool: a burst of calls that cannot share a pipeline (the first calls
        # on a server without the scripts, say) waits for a connection instead of failing
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            **{
                "max_connections": _MAX_CONNECTIONS,
                "retry": no_retry,
                **options,
            },
        )
        return redis.asyncio.Redis.from_pool(pool)

    async def _write(self, operation: str, call: Call, wrote: Callable[[Any], bool]) -> Any:
        """Run a write script (its arguments carry the write's token); see ``_run``."""
        return await self._run(
            operation,
            call.command(),
            write=True,
            attempts=_WRITE_ATTEMPTS,
            wrote=wrote,
        )

    async def _run(
        self,
        operation: str,
        command: tuple[Any, ...],
        *,
        write: bool = False,
        attempts: int = 1,
        wrote: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Send one command (possibly pipelined with others'), the one path of every call.

        Errors become StoreUnavailable. After NOSCRIPT the scripts are loaded and
        the command sent again (a bounded number of times). After a connection
        error the command is sent again, up to ``attempts`` times in all: reads
        freely, writes only when their script recognises its own token (so a
        resend is never applied twice); once a write may have landed, a later
        failure says ``outcome_unknown``. ``wrote`` tells from a write's reply
        whether it changed anything, which is when ``wait_replicas``
        acknowledgements are needed.
        """
        uncertain = False
        attempt = 0
        while True:
            attempt += 1
            try:
                with map_redis_errors(operation, write=write, sha=script_sha(command)):
                    client = await self._connected()
                    for _ in range(_NOSCRIPT_ATTEMPTS):
                        try:
                            if write and self._wait_replicas:
                                reply = await self._send_and_wait(operation, client, command, wrote)
                            else:
                                reply = await self._pipeline.execute(client, *command)
                        except redis.exceptions.NoScriptError:
                            await self._load_scripts(client, {script_sha(command)})
                            self._events.scripts_reloaded(operation)
                        else:
                            if self._events.failures:
                                self._events.recovered()
                            return reply
                raise StoreUnavailable(
                    f"{operation}: the server kept losing the scripts (SCRIPT FLUSH?); "
                    "nothing was run"
                )
            except StoreUnavailable as exc:
                transient = may_pass(exc.__cause__)
                final = attempt >= attempts or not transient
                if transient:
                    self._check_due = True  # a failover may have brought a node not yet checked
                    self._events.lost(exc, retrying=not final)
                if write and uncertain and not exc.outcome_unknown:
                    # an earlier attempt may have landed: what this one says cannot settle it
                    unknown = StoreUnavailable(
                        f"{operation}: the write may or may not have been applied: {exc}",
                        outcome_unknown=True,
                    )
                    self._events.outcome_unknown(unknown)
                    raise unknown from exc
                uncertain = uncertain or exc.outcome_unknown
                if final:
                    if exc.outcome_unknown:
                        self._events.outcome_unknown(exc)
                    raise

    async def _send_and_wait(
        self,
        operation: str,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster,
        command: tuple[Any, ...],
        wrote: Callable[[Any], bool] | None,
    ) -> Any:
        """Send a write and WAIT in one pipeline, so both use one connection."""
        if isinstance(client, redis.asyncio.RedisCluster):
            raise InvalidArgument(
                "wait_replicas is supported on standalone Redis (with replicas or "
                "Sentinel), not on Redis Cluster; nothing was written"
            )
        async with client.pipeline(transaction=False) as pipeline:
            pipe: Any = pipeline  # redis-py leaves execute_command partly untyped
            pipe.execute_command(*command)
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
            reply, acknowledged = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if (wrote is None or wrote(reply)) and int(acknowledged) < self._wait_replicas:
            raise StoreUnavailable(
                f"{operation} was applied on the primary but acknowledged by only "
                f"{acknowledged} of {self._wait_replicas} replicas within "
                f"{self._wait_timeout_ms} ms; it may be lost if the primary fails",
                outcome_unknown=True,
            )
        return reply

    @staticmethod
    async def _load_scripts(
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster, lost: set[str | None]
    ) -> None:
        """Load every script after NOSCRIPT, the ``lost`` ones (SHAs) last.

        The call is sent again right after its own script is loaded, so a server whose
        scripts are flushed again and again has the shortest window to drop it in.
        """
        for script in sorted(ALL_SCRIPTS, key=lambda script: script.sha in lost):
            await client.script_load(script.source)


def _always(reply: Any) -> bool:
    """A write that may have changed something whatever it replied (for ``wait_replicas``)."""
    return True
