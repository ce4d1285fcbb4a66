"""Leases of claimed tasks: fenced writes, renewed, sent again while the store is unreachable."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime
from time import monotonic
from typing import Any, Protocol

import anyio
import msgspec

from .._core.errors import InvalidTransition, LeaseLost, StoreUnavailable, TaskStoreError
from .._core.model import JSONValue, TaskRecord, datetime_from_ms
from .._core.shown import printable
from .._core.status import TaskStatus
from .._core.validation import check_status

logger = logging.getLogger("taskstore_redis.worker")

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 1.0


class LeaseStore(Protocol):
    """What a lease needs of its store: a ``GenericTaskStore`` (named so to import none)."""

    async def get(self, task_id: str, *, owner_id: str) -> TaskRecord:
        """The task as stored."""
        ...

    async def renew_leases(
        self, leases: list[Lease], lease_ms: int | None = None
    ) -> list[TaskStoreError | None]:
        """Renew ``leases``; one outcome per lease."""
        ...

    async def _update_status(
        self,
        task_id: str,
        owner_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        lease: Lease | None,
    ) -> TaskRecord: ...

    async def _set_status_message(
        self, task_id: str, owner_id: str, status_message: str | None, lease: Lease | None
    ) -> TaskRecord: ...

    async def _set_variables(
        self, task_id: str, owner_id: str, variables: dict[str, Any], lease: Lease | None
    ) -> TaskRecord: ...

    async def _complete_with_result(
        self,
        task_id: str,
        owner_id: str,
        status: TaskStatus | str,
        status_message: str | None,
        result: JSONValue,
        lease: Lease | None,
    ) -> TaskRecord: ...

    async def _release(
        self, lease: Lease, delay_ms: int, *, count_attempt: bool = True
    ) -> None: ...

    async def _parent_results(self, lease: Lease) -> dict[str, JSONValue]: ...


class Lease:
    """A claimed task, leased to one worker until ``expires_at`` unless renewed.

    The lease's writes are fenced: each applies only while this lease is still
    the task's current one (same fencing ``token``, not expired, task not ended
    by anyone else), checked in the same atomic step as the write; otherwise
    nothing is written and :class:`~taskstore_redis.LeaseLost` is raised.
    Made by ``claim``; built by hand only to resume a lease known from elsewhere.

    A lease handed to a ``run_worker`` handler also rides out an unreachable store:
    a write that fails with ``StoreUnavailable`` is sent again, with backoff, for as
    long as the worker holds the lease (its renewals go on meanwhile). A write whose
    outcome was unknown and whose resend finds it already applied (the task already
    ended, or is already in the status asked for, under this lease's token) returns as
    applied; it is never applied twice. If the lease runs out before the store
    answers, the write raises ``LeaseLost`` (``"expired"``), as any write of a lost
    lease does. Outside ``run_worker`` a write raises ``StoreUnavailable`` at once.
    """

    def __init__(
        self,
        store: LeaseStore,
        task: TaskRecord,
        *,
        queue: str,
        token: int,
        attempt: int,
        expires_at_ms: float,
        worker_id: str | None,
    ) -> None:
        """A lease of ``task`` in ``queue`` with fencing ``token`` (see ``claim``)."""
        self._store = store
        self._task = task
        self._queue = queue
        self._token = token
        self._attempt = attempt
        self._expires_at = datetime_from_ms(expires_at_ms)
        self._worker_id = worker_id
        self._held_until: float | None = None
        self._gone = ""
        self._shard: int | None = None
        """The shard of its queue it was claimed from (None: built by hand)."""

    def __repr__(self) -> str:
        """The task, queue, attempt and token."""
        return (
            f"Lease(task_id={self.task_id!r}, queue={self._queue!r}, "
            f"attempt={self._attempt}, token={self._token})"
        )

    @property
    def task(self) -> TaskRecord:
        """The task as this lease's latest write (or the claim) left it."""
        return self._task

    @property
    def params(self) -> JSONValue:
        """The job input given to ``submit``."""
        return self._task.params

    @property
    def attempt(self) -> int:
        """Which claim of the task this is, from 1."""
        return self._attempt

    @property
    def token(self) -> int:
        """The fencing token: it goes up with every claim of the task."""
        return self._token

    @property
    def expires_at(self) -> datetime:
        """When the lease runs out unless renewed (aware, UTC; the server's clock)."""
        return self._expires_at

    @property
    def queue(self) -> str:
        """The queue the task was claimed from."""
        return self._queue

    @property
    def worker_id(self) -> str | None:
        """The worker id given to ``claim``."""
        return self._worker_id

    @property
    def owner_id(self) -> str:
        """The task's owner."""
        return self._task.owner_id

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self._task.task.task_id

    async def renew(self, lease_ms: int | None = None) -> None:
        """Extend the lease to ``lease_ms`` (default ``config.default_lease_ms``) from now.

        Raises:
            LeaseLost: the lease is no longer this holder's (see the class doc).
            InvalidLeaseToken: the token was never handed out for this task.

        """

        async def write() -> TaskRecord:
            outcome = (await self._store.renew_leases([self], lease_ms))[0]
            if outcome is not None:
                raise outcome
            return self._task

        await self._retrying("renew", write, None)

    async def update_status(
        self, status: TaskStatus | str, status_message: str | None = None
    ) -> TaskRecord:
        """Fenced ``update_status`` of the task."""

        async def write() -> TaskRecord:
            return await self._store._update_status(
                self.task_id, self.owner_id, status, status_message, self
            )

        def landed(record: TaskRecord) -> bool:
            job = record.job
            return (
                self._is_current(record)
                and job is not None
                and job.state == "leased"
                and record.task.status is check_status(status)
                and record.task.status_message == status_message
            )

        self._task = await self._retrying("update_status", write, landed)
        return self._task

    async def set_status_message(self, status_message: str | None) -> TaskRecord:
        """Fenced ``set_status_message``: a progress note, the status unchanged."""

        async def write() -> TaskRecord:
            return await self._store._set_status_message(
                self.task_id, self.owner_id, status_message, self
            )

        self._task = await self._retrying("set_status_message", write, None)
        return self._task

    async def set_variables(self, variables: dict[str, Any]) -> TaskRecord:
        """Fenced ``set_variables`` of the task."""

        async def write() -> TaskRecord:
            return await self._store._set_variables(self.task_id, self.owner_id, variables, self)

        self._task = await self._retrying("set_variables", write, None)
        return self._task

    async def complete(
        self, status: TaskStatus | str, status_message: str | None, result: JSONValue
    ) -> TaskRecord:
        """Fenced ``complete_with_result``: the task ends, its lease with it."""
        return await self._complete(status, status_message, result, sent_before=False)

    async def _complete(
        self,
        status: TaskStatus | str,
        status_message: str | None,
        result: JSONValue,
        *,
        sent_before: bool,
    ) -> TaskRecord:
        """``complete``, or, with ``sent_before``, ``complete`` sent again.

        ``sent_before``: it was sent once already and its outcome is unknown (a worker's
        batch that was not answered), so a refusal is checked against the task.
        """

        async def write() -> TaskRecord:
            return await self._store._complete_with_result(
                self.task_id, self.owner_id, status, status_message, result, self
            )

        def landed(record: TaskRecord) -> bool:
            return (
                self._is_current(record)
                and record.task.status is check_status(status)
                and record.task.status_message == status_message
                and _same_json(record.result, result)
            )

        self._task = await self._retrying("complete", write, landed, sent_before)
        return self._task

    async def release(self, delay_ms: int = 0, *, count_attempt: bool = True) -> None:
        """Hand the task back, claimable again ``delay_ms`` from now (a later attempt).

        By default this attempt counts: the next claim is the next attempt, and a
        task released after its last attempt fails at that claim. With
        ``count_attempt=False`` the attempt is handed back in the same atomic step
        as the release: the next claim gets this attempt's number again (a worker
        that stops before its handler is done releases this way, so a shutdown costs
        the task nothing). A release whose reply was lost and that is sent again
        hands the attempt back once.

        Raises:
            LeaseLost: the lease is no longer this holder's.
            InvalidArgument: a bad delay.

        """

        async def write() -> TaskRecord:
            await self._store._release(self, delay_ms, count_attempt=count_attempt)
            return self._task

        def landed(record: TaskRecord) -> bool:
            # back in the queue, or claimed again since (and maybe ended): what it was for
            job = record.job
            if job is None or job.queue != self._queue:
                return False
            if job.token > self._token:
                return True
            return job.token == self._token and job.state in ("ready", "delayed", "lost")

        await self._retrying("release", write, landed)

    async def parent_results(self) -> dict[str, JSONValue]:
        """The results of the tasks this one was submitted ``after``, by task id.

        Read in one round trip, in the order ``submit`` named them; a parent with no
        result (one cancelled, or run anyway after it failed without one) or one gone
        since (deleted, or past its TTL) maps to None. Empty for a task submitted
        without ``after``.
        """
        return await self._store._parent_results(self)

    def _is_current(self, record: TaskRecord) -> bool:
        """Whether ``record`` shows this lease's claim as the task's latest one."""
        job = record.job
        return job is not None and job.queue == self._queue and job.token == self._token

    async def _retrying(
        self,
        what: str,
        write: Callable[[], Any],
        landed: Callable[[TaskRecord], bool] | None,
        sent_before: bool = False,
    ) -> TaskRecord:
        """Run ``write``; while the lease is held (``_hold``), again after ``StoreUnavailable``.

        After a failure the write may have been applied (its reply lost): if a resend is
        then refused (``LeaseLost``, ``InvalidTransition``), the task is read and, when
        ``landed`` says it already holds what the write asked for, that record is the
        answer (also at once when ``sent_before``: sent already, its outcome unknown). The
        lease given up (``_give_up``) or run out: ``LeaseLost``.
        """
        pause = _RETRY_FIRST_S
        failures = 1 if sent_before else 0
        while True:
            if self._gone:
                raise LeaseLost(self.task_id, self._gone)
            try:
                try:
                    done: TaskRecord = await write()  # a coroutine here, a record in the sync twin
                    return done
                except (LeaseLost, InvalidTransition) as refused:
                    if not failures or landed is None:
                        raise
                    try:
                        record = await self._store.get(self.task_id, owner_id=self.owner_id)
                    except StoreUnavailable:
                        raise  # read again with the write, once the store answers
                    except TaskStoreError:
                        raise refused from None
                    if not landed(record):
                        raise
                    return record
            except StoreUnavailable as exc:
                held = self._held_until
                if held is None:
                    raise
                failures += 1
                left = held - monotonic()
                if left <= 0:
                    raise LeaseLost(self.task_id, "expired") from exc
                if failures == 1:
                    logger.info(
                        "task %s: %s not answered (%s); sent again while the lease holds",
                        printable(self.task_id),
                        what,
                        printable(str(exc)),
                    )
                await anyio.sleep(min(left, random.uniform(0.5, 1.0) * pause))
                pause = min(2 * pause, _RETRY_MAX_S)

    def _hold(self, until: float | None) -> None:
        """Retry writes the store does not answer until ``until`` (``time.monotonic()``).

        Set by ``run_worker`` when it claims or renews the lease; None stops retrying.
        """
        self._held_until = until

    def _give_up(self, reason: str) -> None:
        """The holder knows the lease is lost (``reason``): every write raises ``LeaseLost``."""
        self._gone = reason

    def _renewed(self, deadline_ms: float) -> None:
        self._expires_at = datetime_from_ms(deadline_ms)

    def _updated(self, task: TaskRecord) -> None:
        self._task = task


def _same_json(stored: JSONValue, sent: JSONValue) -> bool:
    """Whether a stored result is the one sent (compared as the JSON they encode to)."""
    try:
        return msgspec.json.encode(stored) == msgspec.json.encode(sent)
    except (TypeError, msgspec.EncodeError):
        return False
