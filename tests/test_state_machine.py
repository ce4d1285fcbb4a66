"""The task state machine: the table itself, and a store that obeys it.

``ISSUE_MOVES`` is the state machine written down from the issue, by hand and in
wire strings, so that it does not share a single line with the library's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskstore_redis
from taskstore_redis import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    InvalidArgument,
    InvalidTransition,
    NoResult,
    NotReady,
    TaskStatus,
)
from taskstore_redis._core.status import INITIAL_STATUS, can_transition

ISSUE_MOVES: dict[str, set[str]] = {
    "working": {"input_required", "completed", "failed", "cancelled"},
    "input_required": {"working", "completed", "failed", "cancelled"},
    "completed": set(),
    "failed": set(),
    "cancelled": set(),
}
ISSUE_TERMINAL = {"completed", "failed", "cancelled"}

ALL_PAIRS = [(src, dst) for src in TaskStatus for dst in TaskStatus]

OWNER = "alice"


# --- the table -----------------------------------------------------------------------------


def test_the_statuses_are_the_five_of_the_wire() -> None:
    assert {status.value for status in TaskStatus} == set(ISSUE_MOVES)
    assert all(status == status.value for status in TaskStatus)


def test_the_transition_table_is_the_one_of_the_issue() -> None:
    table = {src.value: {dst.value for dst in targets} for src, targets in TRANSITIONS.items()}
    assert table == ISSUE_MOVES


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{s}->{d}" for s, d in ALL_PAIRS])
def test_can_transition_agrees_with_the_issue(src: TaskStatus, dst: TaskStatus) -> None:
    assert can_transition(src, dst) is (dst.value in ISSUE_MOVES[src.value])


@pytest.mark.parametrize("status", list(TaskStatus))
def test_no_status_may_move_to_itself(status: TaskStatus) -> None:
    assert not can_transition(status, status)
    assert status not in TRANSITIONS[status]


def test_the_terminal_statuses_are_completed_failed_and_cancelled() -> None:
    assert {status.value for status in TERMINAL_STATUSES} == ISSUE_TERMINAL
    assert {status.value for status in TaskStatus if status.is_terminal} == ISSUE_TERMINAL


def test_terminal_statuses_are_exactly_those_with_no_way_out() -> None:
    assert {status for status, targets in TRANSITIONS.items() if not targets} == TERMINAL_STATUSES


def test_a_task_starts_in_working() -> None:
    assert INITIAL_STATUS is TaskStatus.WORKING


@pytest.mark.parametrize("status", [TaskStatus.WORKING, TaskStatus.INPUT_REQUIRED])
def test_every_open_status_can_reach_every_terminal_status_in_one_move(status: TaskStatus) -> None:
    assert TERMINAL_STATUSES.issubset(TRANSITIONS[status])


def test_the_transition_table_cannot_be_changed() -> None:
    table: Any = TRANSITIONS
    with pytest.raises(TypeError):
        table[TaskStatus.COMPLETED] = frozenset({TaskStatus.WORKING})
    assert all(isinstance(targets, frozenset) for targets in TRANSITIONS.values())
    assert isinstance(TERMINAL_STATUSES, frozenset)


# --- a store driven by random moves ------------------------------------------------------


@dataclass
class Model:
    """What the issue says a task is after a sequence of operations."""

    status: str = "working"
    result: Any = None
    version: int = 1

    def is_terminal(self) -> bool:
        return self.status in ISSUE_TERMINAL


statuses = st.sampled_from([status.value for status in TaskStatus])
actions = st.one_of(
    st.tuples(st.just("update_status"), statuses),
    st.tuples(st.just("cancel"), st.none()),
    st.tuples(st.just("complete_with_result"), statuses),
    st.tuples(st.just("set_result"), st.none()),
)


def expected_outcome(model: Model, action: str, status: str | None) -> type[Exception] | None:
    """The error the issue prescribes for ``action`` on the model's task, or None; apply it."""
    if action == "update_status":
        assert status is not None
        if status not in ISSUE_MOVES[model.status]:
            return InvalidTransition
        model.status = status
    elif action == "cancel":
        if model.is_terminal():
            return InvalidTransition
        model.status = "cancelled"
    elif action == "complete_with_result":
        assert status is not None
        if status not in ISSUE_TERMINAL:
            return InvalidArgument
        if model.is_terminal():
            return InvalidTransition
        model.status = status
        model.result = f"result {model.version}"
    else:  # set_result: a terminal task's result is final
        if model.is_terminal() and model.result is not None:
            return InvalidArgument
        model.result = f"result {model.version}"
    model.version += 1
    return None


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(actions, max_size=12))
def test_a_store_follows_the_state_machine_of_the_issue(
    steps: list[tuple[str, str | None]],
) -> None:
    with taskstore_redis.GenericTaskStore(taskstore_redis.InMemoryBackend()) as store:
        task_id = store.create("tools/call", owner_id=OWNER).task.task_id
        model = Model()
        for action, status in steps:
            result = f"result {model.version}"
            before = store.get(task_id, owner_id=OWNER)
            expected = expected_outcome(model, action, status)
            try:
                if action == "update_status":
                    assert status is not None
                    store.update_status(task_id, status, owner_id=OWNER)
                elif action == "cancel":
                    store.cancel(task_id, owner_id=OWNER)
                elif action == "complete_with_result":
                    assert status is not None
                    store.complete_with_result(task_id, status, None, result, owner_id=OWNER)
                else:
                    store.set_result(task_id, result, owner_id=OWNER)
            except (InvalidTransition, InvalidArgument) as error:
                assert type(error) is expected, f"{action}({status}) raised {error!r}"
                assert store.get(task_id, owner_id=OWNER) == before  # nothing written
                if isinstance(error, InvalidTransition):
                    assert error.from_status == before.task.status.value
            else:
                assert expected is None, f"{action}({status}) should raise {expected}"
            record = store.get(task_id, owner_id=OWNER)
            assert record.task.status.value == model.status
            assert record.result == model.result
            assert record.version == model.version
            if model.is_terminal() and model.result is not None:
                assert store.get_result(task_id, owner_id=OWNER) == model.result
            elif model.is_terminal():
                with pytest.raises(NoResult):
                    store.get_result(task_id, owner_id=OWNER)
            else:
                with pytest.raises(NotReady):
                    store.get_result(task_id, owner_id=OWNER)
