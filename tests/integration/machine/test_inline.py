"""Inline continuation: a chain runs step after step in one worker process, each claimed
in the transaction that completed the one before, with no broker hop."""

from __future__ import annotations

from typing import Any

from tests.support.queries import event_kinds
from tests.support.stack import Stack
from worker.client import Client
from worker.settings import Settings


def chain(n: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"key": "s0", "task": "t.increment"}]
    steps += [{"key": f"s{i}", "task": "t.increment", "after": [f"s{i - 1}"]} for i in range(1, n)]
    return {"name": f"chain{n}", "steps": steps}


def _waits(client: Client, run_id: object) -> list[float]:
    """Each step's wait in its queue (started_at - queued_at), in key order."""
    steps = sorted(client.get_run(run_id).steps, key=lambda s: s.key)  # type: ignore[arg-type]
    assert all(s.queued_at and s.started_at for s in steps)
    return [(s.started_at - s.queued_at).total_seconds() for s in steps]  # type: ignore[operator]


def test_a_chain_continues_inline_without_the_broker(stack: Stack, client: Client) -> None:
    stack.start_worker()
    run_id = client.start_run(spec=chain(6), inputs={"x": 0})
    view = client.wait(run_id, timeout=60)
    assert view.status == "succeeded", view.error
    assert view.outputs == {"s5": {"x": 6}}
    waits = _waits(client, run_id)
    assert len(waits) == 6
    assert waits[0] > 0, "the root came through the broker"
    # Claimed in the transaction that queued them: not a moment in any queue.
    assert waits[1:] == [0.0] * 5
    kinds = event_kinds(client.runtime.engine, run_id)
    assert kinds.count("claim_step") == kinds.count("complete_step") == 6


def test_fan_out_goes_through_the_broker_and_the_setting_turns_inline_off(
    stack_settings: Settings, stack: Stack, client: Client
) -> None:
    stack.settings = stack_settings.model_copy(update={"inline_continuation": False})
    stack.start_worker()
    run_id = client.start_run(spec=chain(4), inputs={"x": 0})
    assert client.wait(run_id, timeout=60).status == "succeeded"
    assert all(w > 0 for w in _waits(client, run_id)), "every step came through the broker"
