"""The demo's final verification: every task as a fresh store lists it, against the plan.

A fresh store (no remembered records) lists every owner's tasks through all
pages; each task is checked against the plan, the workers' reports and what the
client saw. Checks are named (listing, terminal, outcome, result, cancel race,
variables, no errors), each with its first few failures.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from ..._async._store import GenericTaskStore
from ..._core.model import JSONValue, TaskRecord
from ..._core.status import TaskStatus
from .client import ClientTask, Tally
from .plan import (
    STEPS,
    expected_sum,
    is_cancel_planned,
    message_for,
    owner_id,
    planned_status,
    result_for,
)
from .worker import WorkerReport, worker_name

LIST_LIMIT = 1000
CHECKS = [
    "listing",
    "terminal",
    "once",
    "outcome",
    "result",
    "cancel race",
    "variables",
    "no errors",
]
CHAOS_CHECK = "taken over"
"""With ``--chaos``: every task the killed worker held was finished by another worker
(a later attempt) or cancelled by the client, unless the killed worker had written its
completion just before it died (its report of it lost); and it held at least one."""
TERMINAL_WRITES = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value)
UNREPORTED = "unreported"
"""The outcome of a task last held by the killed worker that no report names:
its completion (or its cancel, while nobody held it) is read from the store."""

CheckResult = tuple[str, bool, str]
"""(check name, passed, the first few failures)."""


class Checker:
    """Collects failed checks by name, keeping the first few details of each."""

    def __init__(self) -> None:
        """No failures yet."""
        self.failures: dict[str, list[str]] = {}
        self.failure_counts: Counter[str] = Counter()

    def fail(self, name: str, detail: str) -> None:
        """Count one failure of check ``name``."""
        self.failure_counts[name] += 1
        details = self.failures.setdefault(name, [])
        if len(details) < 5:
            details.append(detail)

    def results(self, names: list[str]) -> list[CheckResult]:
        """Every check of ``names``, passed or not, with its details."""
        out = []
        for name in names:
            count = self.failure_counts[name]
            detail = "; ".join(self.failures.get(name, []))
            if count > len(self.failures.get(name, [])):
                detail += f"; and {count - len(self.failures[name])} more"
            out.append((name, count == 0, detail))
        return out


class Verification:
    """One verification of a finished run."""

    def __init__(
        self,
        seed: int,
        tasks: int,
        owners: int,
        client: Iterable[ClientTask],
        tally: Tally,
        reports: Iterable[WorkerReport],
        *,
        killed: int | None = None,
    ) -> None:
        """What the run planned, what the client saw and what the workers reported.

        ``killed``: the worker SIGKILLed on purpose; its report holds only what it
        sent before it died.
        """
        self.killed = killed
        self.unreported_tasks: set[int] = set()
        """Tasks last held by the killed worker that no report names (see ``unreported``)."""
        self.seed = seed
        self.tasks = tasks
        self.owners = owners
        self.client = list(client)
        self.tally = tally
        self.reports = list(reports)
        self.checks: list[CheckResult] = []
        self.counts: Counter[str] = Counter()

    async def list_everything(
        self, store: GenericTaskStore, deadline: float
    ) -> tuple[list[TaskRecord], str]:
        """Every owner's tasks through all pages; and a problem with the paging, if any."""
        records: list[TaskRecord] = []
        max_pages = self.tasks // LIST_LIMIT + 2
        for number in range(self.owners):
            owner = owner_id(number)
            cursor: str | None = None
            for _ in range(max_pages):
                page = await store.list(owner_id=owner, cursor=cursor, limit=LIST_LIMIT)
                records.extend(page.tasks)
                cursor = page.next_cursor
                if cursor is None:
                    break
                if time.time() >= deadline:
                    return records, f"the deadline passed while listing {owner}"
            else:
                return records, f"listing {owner} did not end after {max_pages} pages"
        return records, ""

    async def run(self, store: GenericTaskStore, deadline: float) -> None:
        """Check every task as listed by ``store`` against the plan and the reports."""
        records, paging_problem = await self.list_everything(store, deadline)
        check = Checker()
        by_id: dict[str, TaskRecord] = {}
        for record in records:
            if record.task.task_id in by_id:
                check.fail("listing", f"task {record.task.task_id} listed twice")
            by_id[record.task.task_id] = record
        if paging_problem:
            check.fail("listing", paging_problem)
        if len(records) != self.tasks:
            check.fail("listing", f"{len(records)} tasks listed, {self.tasks} created")
        known = {task.task_id for task in self.client}
        for task_id in by_id.keys() - known:
            check.fail("listing", f"task {task_id} listed but never created by this run")

        ends: dict[int, list[tuple[int, str]]] = {}
        for report in self.reports:
            for index, ended in report.outcomes.items():
                ends.setdefault(index, []).append((report.wid, ended))
            for message in report.errors:
                check.fail("no errors", message)
            if report.error_count > len(report.errors):
                more = report.error_count - len(report.errors)
                check.fail("no errors", f"worker {report.wid}: {more} more")
        for message in self.tally.client_errors:
            check.fail("no errors", message)

        by_wid = {report.wid: report for report in self.reports}
        finisher: dict[int, int] = {}
        """Per task index: the worker whose outcome counts (its terminal write, or its
        sight of the client's cancel)."""
        for index, outcomes in ends.items():
            writers = [wid for wid, outcome in outcomes if outcome in TERMINAL_WRITES]
            if len(writers) > 1:
                check.fail("once", f"task {index}: completions written by workers {writers}")
            cancels = [wid for wid, outcome in outcomes if outcome.startswith("cancel-")]
            if writers and cancels:
                check.fail(
                    "once", f"task {index}: completed by {writers}, cancel seen by {cancels}"
                )
            if writers or cancels:
                finisher[index] = (writers or cancels)[0]

        for task in self.client:
            stored = by_id.get(task.task_id)
            if stored is None:
                check.fail("listing", f"task {task.index} ({task.task_id}) missing")
                continue
            wid = finisher.get(task.index)
            outcome: str | None
            variables: dict[str, JSONValue] | None
            if wid is None:
                outcome = await self.unreported(store, task)
                variables = None
            else:
                outcome = by_wid[wid].outcomes[task.index]
                variables = by_wid[wid].merged.get(task.index, {})
            self.check_task(check, task, stored, outcome, variables)
        names = CHECKS
        if self.killed is not None:
            self.check_taken_over(check, by_wid, finisher, by_id)
            names = [*CHECKS, CHAOS_CHECK]
        self.checks = check.results(names)

    async def unreported(self, store: GenericTaskStore, task: ClientTask) -> str | None:
        """The outcome of a task no report names: ``UNREPORTED`` if the killed worker held it last.

        Its report died with it (whatever it had not sent yet), so the store's job
        state says who held the task last.
        """
        if self.killed is None:
            return None
        record = await store.get(task.task_id, owner_id=task.owner)
        if record.job is not None and record.job.worker_id == worker_name(self.killed):
            self.unreported_tasks.add(task.index)
            return UNREPORTED
        return None

    def check_taken_over(
        self,
        check: Checker,
        by_wid: dict[int, WorkerReport],
        finisher: dict[int, int],
        by_id: dict[str, TaskRecord],
    ) -> None:
        """Every task the killed worker held when it died was finished by another, later."""
        assert self.killed is not None
        victim = by_wid.get(self.killed)
        held = (
            {}
            if victim is None
            else {i: a for i, a in victim.claims.items() if i not in victim.outcomes}
        )
        self.counts["held by the killed worker"] = len(held)
        if not held:
            check.fail(CHAOS_CHECK, "the killed worker held no task: nothing was taken over")
        tasks = {task.index: task for task in self.client}
        for index, attempt in sorted(held.items()):
            wid = finisher.get(index)
            if wid is not None and wid != self.killed:
                later = by_wid[wid].claims.get(index, 0)
                if later <= attempt:
                    check.fail(
                        CHAOS_CHECK,
                        f"task {index}: finished by worker {wid} in attempt {later}, "
                        f"not after the killed worker's attempt {attempt}",
                    )
                self.counts["taken over"] += 1
                continue
            record = by_id.get(tasks[index].task_id) if index in tasks else None
            if record is not None and record.task.status is TaskStatus.CANCELLED:
                self.counts["cancelled while orphaned"] += 1
                continue
            if index in self.unreported_tasks and record is not None:
                # its own completion was written; the news of it died with the process
                self.counts["ended by the killed worker"] += 1
                continue
            status = "missing" if record is None else record.task.status.value
            check.fail(CHAOS_CHECK, f"task {index} ({status}) was not taken over")

    def check_task(
        self,
        check: Checker,
        task: ClientTask,
        record: TaskRecord,
        outcome: str | None,
        merged: dict[str, JSONValue] | None,
    ) -> None:
        """Check one task's stored state against the plan and what both sides saw.

        ``outcome`` and ``merged``: what the worker that finished it reported;
        ``merged`` None when no report names the task (``UNREPORTED``).
        """
        index, status = task.index, record.task.status
        if outcome == UNREPORTED:
            # the killed worker ended it (its report lost) or it was cancelled meanwhile
            outcome = "cancel-seen" if status is TaskStatus.CANCELLED else status.value
        self.counts[status.value] += 1
        if not status.is_terminal:
            check.fail("terminal", f"task {index} is still {status.value}")
            return
        if task.status is not status:
            seen = task.status.value if task.status else "nothing terminal"
            check.fail("terminal", f"task {index} is {status.value}, the client saw {seen}")
        if is_cancel_planned(index):
            self.counts["cancel attempts"] += 1
            cancelled_by_client = task.cancel == "cancelled"
            worker_completed = outcome == TaskStatus.COMPLETED.value
            self.counts["cancels won" if cancelled_by_client else "completions won"] += 1
            if cancelled_by_client == worker_completed:
                check.fail(
                    "cancel race",
                    f"task {index}: client cancel {task.cancel}, worker {outcome}: "
                    "not exactly one winner",
                )
            want = TaskStatus.CANCELLED if cancelled_by_client else TaskStatus.COMPLETED
            if not worker_completed and outcome not in ("cancel-seen", "cancel-won"):
                check.fail("cancel race", f"task {index}: worker outcome {outcome}")
        else:
            want = planned_status(index)
            if outcome != want.value:
                check.fail("outcome", f"task {index}: worker reported {outcome}")
        if status is not want:
            check.fail("outcome", f"task {index} is {status.value}, expected {want.value}")
        self.check_result(check, task, record)
        expected_vars = dict(merged or {})
        if task.approved:
            expected_vars["approval"] = "yes"
        for key, value in expected_vars.items():
            if record.variables.get(key) != value:
                got = record.variables.get(key, "nothing")
                check.fail("variables", f"task {index}: {key} = {got!r}, merged {value!r}")
        if (merged is not None and len(merged) < STEPS + 1) or not task.approved:
            check.fail("variables", f"task {index}: not every merge was acknowledged")

    def check_result(self, check: Checker, task: ClientTask, record: TaskRecord) -> None:
        """Check the stored result and the one the client got from ``get_result``."""
        index, status = task.index, record.task.status
        if status is TaskStatus.CANCELLED:
            if record.result is not None or not task.no_result:
                check.fail("result", f"cancelled task {index} has a result: {record.result!r}")
            if record.task.status_message is not None:
                check.fail(
                    "result", f"cancelled task {index}: message {record.task.status_message}"
                )
            return
        expected = result_for(status, index, expected_sum(self.seed, index))
        if record.result != expected:
            check.fail("result", f"task {index}: result {record.result!r}, expected {expected!r}")
        if task.result != expected:
            check.fail("result", f"task {index}: the client got {task.result!r}")
        if record.task.status_message != message_for(status):
            check.fail("result", f"task {index}: message {record.task.status_message!r}")
