"""start_run: idempotent under a race, and all-or-nothing on bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from db.models import StepEdge, WorkflowDefinition, WorkflowRun, WorkflowStep
from tests.support.queries import all_counts, count
from worker.client import Client
from worker.errors import CairnError, DefinitionError

SPEC = {
    "name": "pair",
    "steps": [{"key": "a", "task": "t.item"}, {"key": "b", "task": "t.join", "after": ["a"]}],
}


def test_twenty_racing_callers_with_one_key_create_one_run(client: Client) -> None:
    with ThreadPoolExecutor(20) as pool:
        ids = list(
            pool.map(lambda _: client.start_run(spec=SPEC, idempotency_key="order-42"), range(20))
        )
    assert len(set(ids)) == 1
    engine = client.runtime.engine
    assert count(engine, WorkflowRun) == 1
    assert count(engine, WorkflowStep) == 2
    assert count(engine, StepEdge) == 1
    assert count(engine, WorkflowDefinition) == 1


def test_same_spec_same_version_changed_spec_new_version(client: Client) -> None:
    first = client.start_run(spec=SPEC)
    again = client.start_run(spec=SPEC)
    changed = client.start_run(spec={**SPEC, "description": "now documented"})
    by_name = client.start_run("pair", version=1)
    assert len({first, again, changed, by_name}) == 4
    engine = client.runtime.engine
    assert count(engine, WorkflowDefinition, name="pair") == 2
    with pytest.raises(DefinitionError, match="no version 9 of workflow named 'pair'"):
        client.start_run("pair", version=9)


def test_client_chosen_run_id_is_idempotent(client: Client) -> None:
    chosen = "0190a5b4-0000-7000-8000-000000000001"
    assert str(client.start_run(spec=SPEC, run_id=chosen)) == chosen
    assert str(client.start_run(spec=SPEC, run_id=chosen)) == chosen
    assert count(client.runtime.engine, WorkflowRun) == 1


def steps(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bad", "steps": [{"key": "a", "task": "t.item"}, *extra]}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"n": value}
    return value


BAD: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("duplicate key", steps({"key": "a", "task": "t.item"}), {}, "steps[1].key"),
    (
        "unknown after",
        steps({"key": "b", "task": "t.item", "after": ["zz"]}),
        {},
        "steps[1].after[0]",
    ),
    (
        "cycle",
        {
            "name": "loop",
            "steps": [
                {"key": "a", "task": "t.item", "after": ["c"]},
                {"key": "b", "task": "t.item", "after": ["a"]},
                {"key": "c", "task": "t.item", "after": ["b"]},
            ],
        },
        {},
        "steps: cycle a -> c -> b -> a",
    ),
    ("unregistered step", steps({"key": "b", "task": "nope.missing"}), {}, "steps[1].task"),
    (
        "zero attempts",
        steps({"key": "b", "task": "t.item", "retry": {"max_attempts": 0}}),
        {},
        "steps[1].retry.max_attempts",
    ),
    (
        "backoff max below base",
        steps({"key": "b", "task": "t.item", "retry": {"backoff_base_s": 5, "backoff_max_s": 1}}),
        {},
        "steps[1].retry",
    ),
    (
        "negative timeout",
        steps({"key": "b", "task": "t.item", "timeout_s": -1}),
        {},
        "steps[1].timeout_s",
    ),
    ("unknown field", steps({"key": "b", "task": "t.item", "retries": 3}), {}, "steps[1].retries"),
    ("no steps", {"name": "empty", "steps": []}, {}, "steps"),
    ("NaN input", SPEC, {"x": float("nan")}, "inputs.x"),
    ("infinite input", SPEC, {"y": [1, float("inf")]}, "inputs.y[1]"),
    ("NUL input", SPEC, {"s": "a\x00b"}, "inputs.s"),
    ("lone surrogate", SPEC, {"s": "\ud800"}, "inputs.s"),
    ("too deep", SPEC, {"deep": nested(100)}, "nested deeper than 64"),
    ("too large", SPEC, {"blob": "x" * 300_000}, "over the inline limit"),
    ("input named like a step", SPEC, {"a": 1}, "inputs.a"),
]


@pytest.mark.parametrize(("case", "spec", "inputs", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_definitions_and_inputs_are_refused_with_nothing_written(
    client: Client, case: str, spec: dict[str, Any], inputs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(CairnError) as info:
        client.start_run(spec=spec, inputs=inputs)
    assert expected in str(info.value), f"{case}: {info.value}"
    assert set(all_counts(client.runtime.engine).values()) == {0}
