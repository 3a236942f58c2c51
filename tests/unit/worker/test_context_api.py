"""The object a step receives shows what a step may do, and nothing of the runner's."""

from __future__ import annotations

from worker.context import StepArtifacts, StepContext


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_step_context_is_the_users_api_only() -> None:
    assert _public(StepContext) == {
        "inputs",
        "resume_state",
        "run_id",
        "step_key",
        "attempt",
        "cancelled",
        "cost",
        "message",
        "artifacts",
        "checkpoint",
        "raise_if_stopped",
        "wait_for_approval",
        "wait_for_signal",
        "sleep",
        "budget_left",
        "start_child",
        "rate_limit",
        "wait_child",
    }


def test_step_artifacts_put_get_open() -> None:
    assert _public(StepArtifacts) == {"put", "get", "open"}
