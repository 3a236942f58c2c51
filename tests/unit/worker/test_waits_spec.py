"""Approval gates in a definition, and the checks on what a step waits for."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from db.states import RUN_TRANSITIONS, STEP_TRANSITIONS, RunStatus, StepStatus
from worker.context import MAX_WAIT_S, Approval, _seconds
from worker.definitions import parse_spec
from worker.definitions.spec import ApprovalGate
from worker.errors import ApprovalExpired, ApprovalRejected, DefinitionError
from worker.machine.definitions import checksum

PLAIN = {"name": "w", "steps": [{"key": "a", "task": "t.x"}]}


def test_a_spec_without_gates_keeps_its_checksum() -> None:
    body = parse_spec(PLAIN).body()
    assert "approve" not in body["steps"][0]
    gated = {"name": "w", "steps": [{"key": "a", "task": "t.x", "approve": {"title": "ok?"}}]}
    assert checksum(parse_spec(gated).body()) != checksum(body)


def test_escalation_needs_a_group_and_a_timeout() -> None:
    with pytest.raises(ValidationError, match="escalate_to"):
        ApprovalGate(title="t", timeout_s=5.0, on_timeout="escalate")
    with pytest.raises(ValidationError, match="needs timeout_s"):
        ApprovalGate(title="t", on_timeout="approve")
    with pytest.raises(ValidationError, match="on_timeout"):
        ApprovalGate(title="t", timeout_s=5.0, on_timeout="shrug")  # type: ignore[arg-type]
    assert ApprovalGate(title="t", timeout_s=5.0, on_timeout="escalate", escalate_to="b")


def test_wait_lengths_are_checked() -> None:
    assert _seconds("timeout", None) is None
    assert _seconds("seconds", 2) == 2.0
    for bad in (-1, MAX_WAIT_S + 1, "5", True, float("nan")):
        with pytest.raises(DefinitionError):
            _seconds("seconds", bad)  # type: ignore[arg-type]


def test_a_decision_becomes_a_value_or_an_error() -> None:
    approved = Approval.of(
        {"status": "approved", "by": "a", "comment": None, "decided_at": "x", "approval_id": "1"},
        "t",
    )
    assert approved.by == "a"
    with pytest.raises(ApprovalRejected, match="rejected by bob: no"):
        Approval.of({"status": "rejected", "by": "bob", "comment": "no"}, "t")
    with pytest.raises(ApprovalExpired):
        Approval.of({"status": "expired"}, "t")


def test_waiting_and_paused_are_states_that_lead_back() -> None:
    assert StepStatus.QUEUED in STEP_TRANSITIONS[StepStatus.WAITING]
    assert StepStatus.WAITING in STEP_TRANSITIONS[StepStatus.RUNNING]
    assert RunStatus.RUNNING in RUN_TRANSITIONS[RunStatus.PAUSED]
    assert RunStatus.PAUSED not in RUN_TRANSITIONS[RunStatus.QUEUED]
