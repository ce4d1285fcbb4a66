"""Compare-and-set retries, made deterministic by a backend that meddles.

``MeddlingBackend`` is an InMemoryBackend where another writer changes the task
right before each compare-and-set of its core record (status, message,
result), as long as it has meddles left. That is the contention a real race
produces, on cue: the store must re-judge the rules against the record the
conflict reply carries and retry, and raise ConcurrentModification only when its
``cas_retries`` (or ``cas_timeout_ms``) run out. Variable merges never take part:
they have no version check.

Where attempts are counted, the task is created through another store, so that
the store under test has no remembered copy of it and its first read is fresh:
every conflict is then a real one and takes one of its attempts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

import taskstore_redis
import taskstore_redis._async._engine
import taskstore_redis.asyncio
from taskstore_redis import (
    ConcurrentModification,
    InvalidTransition,
    StoreConfig,
    TaskNotFound,
    TaskStatus,
)
from taskstore_redis._core.model import FORMAT
from taskstore_redis.backend import CasResult, CoreWrite, TaskKey

OWNER = "alice"
METHOD = "tools/call"
ALWAYS = 10**9


def rewrite_of(key: TaskKey, core_version: int, data: bytes) -> CoreWrite:
    """A compare-and-set that writes the core record back unchanged."""
    now = time.time_ns() // 1_000_000
    return CoreWrite(
        key=key,
        expected_core_version=core_version,
        format=FORMAT,
        data=data,
        created_at_ms=now,
        terminal=False,
        now_ms=now,
    )


class AsyncMeddlingBackend(taskstore_redis.asyncio.InMemoryBackend):
    """An async in-memory backend that lets ``meddle`` write before each compare-and-set."""

    def __init__(self, meddles: int) -> None:
        super().__init__()
        self.meddles_left = meddles
        self.cas_calls = 0
        self.meddle: Callable[[TaskKey], Awaitable[None]] = self.bump_version
        self._meddling = False

    async def bump_version(self, key: TaskKey) -> None:
        """Rewrite the core record unchanged, which moves its core version on."""
        current = await self.get(key)
        assert current is not None
        applied = await super().compare_and_set(rewrite_of(key, current.core_version, current.data))
        assert applied.applied

    async def compare_and_set(self, write: CoreWrite) -> CasResult:
        if self._meddling:  # the meddler's own write
            return await super().compare_and_set(write)
        self.cas_calls += 1
        if self.meddles_left > 0:
            self.meddles_left -= 1
            self._meddling = True
            try:
                await self.meddle(write.key)
            finally:
                self._meddling = False
        return await super().compare_and_set(write)


class SyncMeddlingBackend(taskstore_redis.InMemoryBackend):
    """The blocking twin of AsyncMeddlingBackend."""

    def __init__(self, meddles: int) -> None:
        super().__init__()
        self.meddles_left = meddles
        self.cas_calls = 0
        self.meddle: Callable[[TaskKey], None] = self.bump_version
        self._meddling = False

    def bump_version(self, key: TaskKey) -> None:
        """Rewrite the core record unchanged, which moves its core version on."""
        current = self.get(key)
        assert current is not None
        assert super().compare_and_set(rewrite_of(key, current.core_version, current.data)).applied

    def compare_and_set(self, write: CoreWrite) -> CasResult:
        if self._meddling:
            return super().compare_and_set(write)
        self.cas_calls += 1
        if self.meddles_left > 0:
            self.meddles_left -= 1
            self._meddling = True
            try:
                self.meddle(write.key)
            finally:
                self._meddling = False
        return super().compare_and_set(write)


# --- async store ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_conflicting_write_is_retried_until_it_applies() -> None:
    backend = AsyncMeddlingBackend(meddles=3)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(METHOD, owner_id=OWNER)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=3))
    updated = await store.update_status(task_id, TaskStatus.INPUT_REQUIRED, "mine", owner_id=OWNER)
    assert updated.task.status_message == "mine"
    assert backend.cas_calls == 4  # three conflicts, then the write
    assert updated.version == 1 + 3 + 1  # three meddling writes, then ours
    assert await store.get(task_id, owner_id=OWNER) == updated


@pytest.mark.anyio
async def test_without_retries_one_conflict_raises_concurrent_modification() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(METHOD, owner_id=OWNER)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=0))
    with pytest.raises(ConcurrentModification) as raised:
        await store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
    assert raised.value.attempts == 1
    assert raised.value.task_id == task_id
    assert raised.value.code == -32603
    stored = await store.get(task_id, owner_id=OWNER)
    assert stored.task.status is TaskStatus.WORKING  # our change was not written
    assert stored.version == 2  # only the meddler's


@pytest.mark.anyio
async def test_the_time_bound_ends_retries_before_the_count_does() -> None:
    backend = AsyncMeddlingBackend(meddles=ALWAYS)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(METHOD, owner_id=OWNER)).task.task_id
    config = StoreConfig(cas_retries=10**6, cas_timeout_ms=0)
    store = taskstore_redis.asyncio.GenericTaskStore(backend, config)
    with pytest.raises(ConcurrentModification) as raised:
        await store.cancel(task_id, owner_id=OWNER)
    assert raised.value.attempts == 1
    assert backend.cas_calls == 1


@pytest.mark.anyio
async def test_the_first_retry_goes_at_once_and_later_ones_back_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[int] = []

    def record_pause(attempt: int) -> float:
        pauses.append(attempt)
        return 0.0

    monkeypatch.setattr(taskstore_redis._async._engine, "backoff_seconds", record_pause)
    backend = AsyncMeddlingBackend(meddles=3)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(METHOD, owner_id=OWNER)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend)
    await store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
    assert backend.cas_calls == 4
    assert pauses == [0, 1]  # none after the first conflict, one after each later one


@pytest.mark.anyio
async def test_a_merge_in_between_does_not_make_a_status_change_conflict() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    store = taskstore_redis.asyncio.GenericTaskStore(backend)
    rival = taskstore_redis.asyncio.GenericTaskStore(backend)

    async def rival_merges(key: TaskKey) -> None:
        await rival.set_variables(key.task_id, {"theirs": 1}, owner_id=key.owner_id)

    backend.meddle = rival_merges
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    updated = await store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
    assert backend.cas_calls == 1  # applied at once
    assert updated.variables == {"theirs": 1}
    assert updated.version == 3


@pytest.mark.anyio
async def test_a_merge_never_runs_a_compare_and_set() -> None:
    backend = AsyncMeddlingBackend(meddles=ALWAYS)
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=0))
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    for n in range(5):
        await store.set_variables(task_id, {f"k{n}": n}, owner_id=OWNER)
    assert backend.cas_calls == 0
    assert (await store.get(task_id, owner_id=OWNER)).variables == {f"k{n}": n for n in range(5)}


@pytest.mark.anyio
async def test_concurrent_modification_comes_only_when_every_retry_conflicted() -> None:
    backend = AsyncMeddlingBackend(meddles=ALWAYS)
    creator = taskstore_redis.asyncio.GenericTaskStore(backend)
    task_id = (await creator.create(METHOD, owner_id=OWNER)).task.task_id
    store = taskstore_redis.asyncio.GenericTaskStore(backend, StoreConfig(cas_retries=2))
    with pytest.raises(ConcurrentModification) as raised:
        await store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
    assert raised.value.attempts == 3
    assert backend.cas_calls == 3
    assert (await store.get(task_id, owner_id=OWNER)).task.status is TaskStatus.WORKING


@pytest.mark.anyio
async def test_a_retry_judges_the_rules_again_against_the_fresh_record() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    store = taskstore_redis.asyncio.GenericTaskStore(backend)
    rival = taskstore_redis.asyncio.GenericTaskStore(backend)

    async def rival_completes(key: TaskKey) -> None:
        await rival.complete_with_result(
            key.task_id, "completed", "rival", "theirs", owner_id=key.owner_id
        )

    backend.meddle = rival_completes
    task_id = (await store.create(METHOD, owner_id=OWNER)).task.task_id
    with pytest.raises(InvalidTransition) as raised:
        await store.cancel(task_id, owner_id=OWNER)
    assert (raised.value.from_status, raised.value.to_status) == ("completed", "cancelled")
    assert await store.get_result(task_id, owner_id=OWNER) == "theirs"


@pytest.mark.anyio
async def test_a_task_purged_during_a_mutation_is_task_not_found() -> None:
    backend = AsyncMeddlingBackend(meddles=1)
    store = taskstore_redis.asyncio.GenericTaskStore(backend)

    async def purge(key: TaskKey) -> None:
        # a moment after the TTL ran out, long before the retention would drop the task
        assert await backend.purge_expired(time.time_ns() // 1_000_000 + 2_000) == 1

    backend.meddle = purge
    task_id = (await store.create(METHOD, owner_id=OWNER, ttl_ms=1_000)).task.task_id
    with pytest.raises(TaskNotFound):
        await store.update_status(task_id, TaskStatus.COMPLETED, owner_id=OWNER)


# --- sync store ----------------------------------------------------------------------------


def test_sync_a_conflicting_write_is_retried_until_it_applies() -> None:
    backend = SyncMeddlingBackend(meddles=3)
    creator = taskstore_redis.GenericTaskStore(backend)
    task_id = creator.create(METHOD, owner_id=OWNER).task.task_id
    store = taskstore_redis.GenericTaskStore(backend, StoreConfig(cas_retries=3))
    updated = store.update_status(task_id, TaskStatus.INPUT_REQUIRED, "mine", owner_id=OWNER)
    assert updated.task.status_message == "mine"
    assert backend.cas_calls == 4
    assert store.get(task_id, owner_id=OWNER) == updated


def test_sync_concurrent_modification_comes_only_when_every_retry_conflicted() -> None:
    backend = SyncMeddlingBackend(meddles=ALWAYS)
    creator = taskstore_redis.GenericTaskStore(backend)
    task_id = creator.create(METHOD, owner_id=OWNER).task.task_id
    store = taskstore_redis.GenericTaskStore(backend, StoreConfig(cas_retries=2))
    with pytest.raises(ConcurrentModification) as raised:
        store.update_status(task_id, TaskStatus.INPUT_REQUIRED, owner_id=OWNER)
    assert raised.value.attempts == 3
    assert backend.cas_calls == 3
    assert store.get(task_id, owner_id=OWNER).task.status is TaskStatus.WORKING


def test_sync_a_retry_judges_the_rules_again_against_the_fresh_record() -> None:
    backend = SyncMeddlingBackend(meddles=1)
    store = taskstore_redis.GenericTaskStore(backend)
    rival = taskstore_redis.GenericTaskStore(backend)

    def rival_cancels(key: TaskKey) -> None:
        rival.cancel(key.task_id, owner_id=key.owner_id)

    backend.meddle = rival_cancels
    task_id = store.create(METHOD, owner_id=OWNER).task.task_id
    with pytest.raises(InvalidTransition) as raised:
        store.complete_with_result(task_id, TaskStatus.COMPLETED, None, "mine", owner_id=OWNER)
    assert (raised.value.from_status, raised.value.to_status) == ("cancelled", "completed")
    assert store.get(task_id, owner_id=OWNER).result is None
