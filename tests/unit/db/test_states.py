"""Every legal and every illegal transition of each state machine."""

from __future__ import annotations

import itertools

import pytest

from db.states import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_STEP,
    WORKER_TRANSITIONS,
    RunStatus,
    StepStatus,
    WorkerStatus,
    check_in,
    check_run_transition,
    check_step_transition,
    check_worker_transition,
    step_sources,
)
from worker.errors import IllegalTransition

MACHINES = [
    (RunStatus, RUN_TRANSITIONS, check_run_transition),
    (StepStatus, STEP_TRANSITIONS, check_step_transition),
    (WorkerStatus, WORKER_TRANSITIONS, check_worker_transition),
]
ALL_PAIRS = [
    (enum_type, table, check, current, target)
    for enum_type, table, check in MACHINES
    for current, target in itertools.product(list(enum_type), list(enum_type))
]


@pytest.mark.parametrize(("enum_type", "table", "check", "current", "target"), ALL_PAIRS)
def test_each_transition_is_allowed_exactly_when_the_table_says_so(
    enum_type, table, check, current, target
) -> None:
    if target in table[current]:
        check(current, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check(current, target)
        assert repr(str(current)) in str(info.value)
        assert repr(str(target)) in str(info.value)


@pytest.mark.parametrize(("enum_type", "table", "check"), MACHINES)
def test_every_status_has_a_row(enum_type, table, check) -> None:
    assert set(table) == set(enum_type)


def test_a_succeeded_step_never_changes_again() -> None:
    assert STEP_TRANSITIONS[StepStatus.SUCCEEDED] == frozenset()
    assert StepStatus.SUCCEEDED in TERMINAL_STEP


def test_claim_is_only_from_queued() -> None:
    assert step_sources(StepStatus.RUNNING) == ["queued"]


def test_check_in_lists_every_value() -> None:
    sql = check_in("status", RunStatus)
    assert sql.startswith("status IN (")
    for status in RunStatus:
        assert f"'{status.value}'" in sql
