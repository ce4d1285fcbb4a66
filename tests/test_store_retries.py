"""Compare-and-set retries, made deterministic by a backend that meddles.

``MeddlingBackend`` is an InMemoryBackend where another writer changes the task
right before each compare-and-set, as long as it has meddles left. That is the
contention a real race produces, on cue: the store must re-read, re-judge the
rules against the fresh record and retry, and raise ConcurrentModification only
when its ``cas_retries`` run out.

Where attempts are counted, the task is created through another store, so that
the store under test has no remembered copy of it and its first read is fresh:
every conflict is then a real one and takes one of its attempts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

import taskstore_redis
import taskstore_redis.asyncio
from taskstore_redis import (
    CasResult,
    ConcurrentModification,
    InvalidTransition,
    StoreConfig,
    TaskKey,
    TaskNotFound,
    TaskStatus,
)

OWNER = "alice"
METHOD = "tools/call"
ALWAYS = 10**9


class AsyncMeddlingBackend(taskstore_redis.asyncio.InMemoryBackend):
    """An async in-memory backend that lets ``meddle`` write before each compare-and-set."""

    def __init__(self, meddles: int) -> None:
        super().__init__()
        self.meddles_left = meddles
        self.cas_calls = 0
        self.meddle: Callable[[TaskKey], Awaitable[None]] = self.bump_version
        self._meddling = False

    async def bump_version(self, key: TaskKey) -> None:
        """Rewrite the record unchanged, which moves its version on."""
        current = await self.get(key)
        assert current is not None
        applied = await super().compare_and_set(key, current.version, current.data)
        assert applied.applied

    async def compare_and_set(self, key: TaskKey, expected_version: int, data: bytes) -> CasResult:
        if self._meddling:  # the meddler's own write
            return await super().compare_and_set(key, expected_version, data)
        self.cas_calls += 1
        if self.meddles_left > 0:
            self.meddles_left -= 1
            self._meddling = True
            try:
                await self.meddle(key)
            finally:
                self._meddling = False
        return await super().compare_and_set(key, expected_version, data)


class SyncMeddlingBackend(taskstore_redis.InMemoryBackend):
    """The blocking twin of AsyncMeddlingBackend."""

    def __init__(self, meddles: int) -> None:
        super().__init__()
        self.meddles_left = meddles
        self.cas_calls = 0
        self.meddle: Callable[[TaskKey], None] = self.bump_version
        self._meddling = False

    def bump_version(self, key: TaskKey) -> None:
        """Rewrite the record unchanged, which moves its version on."""
        current = self.get(key)
        assert current is not None
        assert super().compare_and_set(key, current.version, current.data).applied

    def compare_and_set(self, key: TaskKey, expected_version: int, data: bytes) -> CasResult:
        if self._meddling:
            return super().compare_and_set(key, expected_version, data)
        self.cas_calls += 1
        if self.meddles_left > 0:
            self.meddles_left -= 1
            self._meddling = True
            try:
                self.meddle(key)
            finally:
                self._meddling = False
        return super().compare_and_set(key, expected_version, data)


# --- async store ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_conflicting_write_is_retried_until_it_applies() -> None:
    backend = AsyncMeddlingBackend(meddles=3)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(OWNER, METHOD)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=3))
    updated = await store.set_variables(task_id, OWNER, {"mine": 1})
    assert updated.variables == {"mine": 1}
    assert backend.cas_calls == 4  # three conflicts, then the write
    assert updated.version == 1 + 3 + 1  # three meddling writes, then ours
    assert await store.get(task_id, OWNER) == updated


@pytest.mark.anyio
async def test_without_retries_one_conflict_raises_concurrent_modification() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(OWNER, METHOD)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=0))
    with pytest.raises(ConcurrentModification) as raised:
        await store.set_variables(task_id, OWNER, {"mine": 1})
    assert raised.value.attempts == 1
    assert raised.value.task_id == task_id
    assert raised.value.code == -32603
    stored = await store.get(task_id, OWNER)
    assert stored.variables == {}  # our change was not written
    assert stored.version == 2  # only the meddler's


@pytest.mark.anyio
async def test_concurrent_modification_comes_only_when_every_retry_conflicted() -> None:
    backend = AsyncMeddlingBackend(meddles=ALWAYS)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(OWNER, METHOD)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=2))
    with pytest.raises(ConcurrentModification) as raised:
        await store.update_status(task_id, OWNER, TaskStatus.INPUT_REQUIRED)
    assert raised.value.attempts == 3
    assert backend.cas_calls == 3
    assert (await store.get(task_id, OWNER)).task.status is TaskStatus.WORKING


@pytest.mark.anyio
async def test_a_retry_judges_the_rules_again_against_the_fresh_record() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    store = taskstore_redis.asyncio.GenericTaskStore(backend)
    rival = taskstore_redis.asyncio.GenericTaskStore(backend)

    async def rival_completes(key: TaskKey) -> None:
        await rival.complete_with_result(key.task_id, key.owner_id, "completed", "rival", "theirs")

    backend.meddle = rival_completes
    task_id = (await store.create(OWNER, METHOD)).task.task_id
    with pytest.raises(InvalidTransition) as raised:
        await store.cancel(task_id, OWNER)
    assert (raised.value.from_status, raised.value.to_status) == ("completed", "cancelled")
    assert await store.get_result(task_id, OWNER) == "theirs"


@pytest.mark.anyio
async def test_a_retried_merge_keeps_the_variables_written_in_between() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    store = taskstore_redis.asyncio.GenericTaskStore(backend)
    rival = taskstore_redis.asyncio.GenericTaskStore(backend)

    async def rival_writes(key: TaskKey) -> None:
        await rival.set_variables(key.task_id, key.owner_id, {"theirs": 1})

    backend.meddle = rival_writes
    task_id = (await store.create(OWNER, METHOD)).task.task_id
    updated = await store.set_variables(task_id, OWNER, {"mine": 2})
    assert updated.variables == {"theirs": 1, "mine": 2}
    assert updated.version == 3


@pytest.mark.anyio
async def test_a_task_purged_during_a_mutation_is_task_not_found() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    store = taskstore_redis.asyncio.GenericTaskStore(backend)

    async def purge(key: TaskKey) -> None:
        # a moment after the TTL ran out, long before the retention would drop the task
        assert await backend.purge_expired(time.time_ns() // 1_000_000 + 2_000) == 1

    backend.meddle = purge
    task_id = (await store.create(OWNER, METHOD, ttl_ms=1_000)).task.task_id
    with pytest.raises(TaskNotFound):
        await store.update_status(task_id, OWNER, TaskStatus.COMPLETED)


# --- sync store ----------------------------------------------------------------------------


def test_sync_a_conflicting_write_is_retried_until_it_applies() -> None:
    backend = SyncMeddlingBackend(meddles=3)
    creator = taskstore_redis.GenericTaskStore(backend)
    task_id = creator.create(OWNER, METHOD).task.task_id
    store = taskstore_redis.GenericTaskStore(backend, StoreConfig(cas_retries=3))
    updated = store.set_variables(task_id, OWNER, {"mine": 1})
    assert updated.variables == {"mine": 1}
    assert backend.cas_calls == 4
    assert store.get(task_id, OWNER) == updated


def test_sync_concurrent_modification_comes_only_when_every_retry_conflicted() -> None:
    backend = SyncMeddlingBackend(meddles=ALWAYS)
    creator = taskstore_redis.GenericTaskStore(backend)
    task_id = creator.create(OWNER, METHOD).task.task_id
    store = taskstore_redis.GenericTaskStore(backend, StoreConfig(cas_retries=2))
    with pytest.raises(ConcurrentModification) as raised:
        store.set_variables(task_id, OWNER, {"mine": 1})
    assert raised.value.attempts == 3
    assert backend.cas_calls == 3
    assert store.get(task_id, OWNER).variables == {}


def test_sync_a_retry_judges_the_rules_again_against_the_fresh_record() -> None:
    backend = SyncMeddlingBackend(meddles=1)
    store = taskstore_redis.GenericTaskStore(backend)
    rival = taskstore_redis.GenericTaskStore(backend)

    def rival_cancels(key: TaskKey) -> None:
        rival.cancel(key.task_id, key.owner_id)

    backend.meddle = rival_cancels
    task_id = store.create(OWNER, METHOD).task.task_id
    with pytest.raises(InvalidTransition) as raised:
        store.complete_with_result(task_id, OWNER, TaskStatus.COMPLETED, None, "mine")
    assert (raised.value.from_status, raised.value.to_status) == ("cancelled", "completed")
    assert store.get(task_id, OWNER).result is None
