"""Leases of claimed tasks, and what a store knows of the shards of the queues it claims from."""

from __future__ import annotations

import threading
from datetime import datetime
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._core.fanout import Pokeable
from .._core.model import JSONValue, TaskRecord, datetime_from_ms
from .._core.status import TaskStatus
from ._protocols import QueueWatch

if TYPE_CHECKING:
    from ._store import GenericTaskStore


class Lease:
    """A claimed task, leased to one worker until ``expires_at`` unless renewed.

    The lease's writes are fenced: each applies only while this lease is still
    the task's current one (same fencing ``token``, not expired, task not ended
    by anyone else), checked in the same atomic step as the write; otherwise
    nothing is written and :class:`~taskstore_redis.LeaseLost` is raised.
    Made by ``claim``; built by hand only to resume a lease known from elsewhere.
    """

    def __init__(
        self,
        store: GenericTaskStore,
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
        outcome = (await self._store.renew_leases([self], lease_ms))[0]
        if outcome is not None:
            raise outcome

    async def update_status(
        self, status: TaskStatus | str, status_message: str | None = None
    ) -> TaskRecord:
        """Fenced ``update_status`` of the task."""
        self._task = await self._store._update_status(
            self.task_id, self.owner_id, status, status_message, self
        )
        return self._task

    async def set_status_message(self, status_message: str | None) -> TaskRecord:
        """Fenced ``set_status_message``: a progress note, the status unchanged."""
        self._task = await self._store._set_status_message(
            self.task_id, self.owner_id, status_message, self
        )
        return self._task

    async def set_variables(self, variables: dict[str, Any]) -> TaskRecord:
        """Fenced ``set_variables`` of the task."""
        self._task = await self._store._set_variables(self.task_id, self.owner_id, variables, self)
        return self._task

    async def complete(
        self, status: TaskStatus | str, status_message: str | None, result: JSONValue
    ) -> TaskRecord:
        """Fenced ``complete_with_result``: the task ends, its lease with it."""
        self._task = await self._store._complete_with_result(
            self.task_id, self.owner_id, status, status_message, result, self
        )
        return self._task

    async def release(self, delay_ms: int = 0) -> None:
        """Hand the task back, claimable again ``delay_ms`` from now (a later attempt).

        The attempt counter moves on at the next claim; a task released after
        its last attempt fails at that claim.

        Raises:
            LeaseLost: the lease is no longer this holder's.
            InvalidArgument: a bad delay.

        """
        await self._store._release(self, delay_ms)

    def _renewed(self, deadline_ms: float) -> None:
        self._expires_at = datetime_from_ms(deadline_ms)

    def _updated(self, task: TaskRecord) -> None:
        self._task = task


class QueueHints:
    """What a store knows of each shard of a queue it claims from, and who waits on it.

    A shard is "maybe" (worth a visit) from the start, after a notice and after
    the subscription was renewed; an empty claim makes it "empty until" the time
    the backend said it next needs a visit. A notice counter per shard makes a
    notice that lands during a claim survive that claim's empty answer.
    """

    def __init__(self, shards: int) -> None:
        """Every shard worth a visit."""
        self.shards = shards
        self.watch: QueueWatch | None = None
        self.opened = False
        self._lock = threading.Lock()
        self._maybe = set(range(shards))
        self._due: dict[int, float] = {}
        self._notices = [0] * shards
        self._waiters: set[Pokeable] = set()
        self._next = 0

    def notice(self, shard: int) -> None:
        """A shard may have work (called from any thread): wake every waiting claim."""
        with self._lock:
            self._maybe.add(shard)
            self._notices[shard] += 1
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.poke()

    def live(self) -> bool:
        """Whether the subscription is confirmed now, so the hints can be trusted."""
        watch = self.watch
        return self.opened and watch is not None and watch.live()

    def to_visit(self) -> list[tuple[int, int]]:
        """(shard, notice count) of the shards worth a visit now, round-robin from the last."""
        now = monotonic()
        trusted = self.live()
        with self._lock:
            start = self._next
            self._next = (start + 1) % self.shards
            order = [(start + step) % self.shards for step in range(self.shards)]
            return [
                (shard, self._notices[shard])
                for shard in order
                if not trusted
                or shard in self._maybe
                or (shard in self._due and self._due[shard] <= now)
            ]

    def settle(self, shard: int, notices: int, next_due_in_ms: float | None, drained: bool) -> None:
        """Record a claim's answer: with nothing more to take, the shard is empty until due."""
        with self._lock:
            if next_due_in_ms is None:
                self._due.pop(shard, None)
            else:
                self._due[shard] = monotonic() + next_due_in_ms / 1000
            if drained and self._notices[shard] == notices:
                self._maybe.discard(shard)

    def pause(self) -> float | None:
        """Seconds until a shard is due again; None when none is."""
        with self._lock:
            if not self._due:
                return None
            return max(0.0, min(self._due.values()) - monotonic())

    def add_waiter(self, waiter: Pokeable) -> None:
        """Wake ``waiter`` at every notice."""
        with self._lock:
            self._waiters.add(waiter)

    def remove_waiter(self, waiter: Pokeable) -> None:
        """Stop waking ``waiter``."""
        with self._lock:
            self._waiters.discard(waiter)
