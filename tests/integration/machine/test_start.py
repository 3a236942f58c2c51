"""start_run: idempotent under a race, and all-or-nothing on bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from db.models import StepEdge, WorkflowDefinition, WorkflowRun, WorkflowStep
from db.session import run_transaction, transaction
from tests.support.queries import all_counts, count
from tests.support.sent import recorded
from worker.client import Client
from worker.errors import CairnError, DefinitionError
from worker.machine.start import StartRequest, plan_start
from worker.settings import Settings

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


def test_a_start_writes_every_planned_column_of_its_steps_and_edges(client: Client) -> None:
    """PostgreSQL sends the rows as JSON in one statement, SQLite as an executemany: the
    rows read back are the plan's, column by column, on both."""
    spec = {
        "name": "rich",
        "steps": [
            {"key": "a", "task": "t.item", "queue": "q1", "priority": 7, "timeout_s": 2.5},
            {
                "key": "b",
                "task": "t.item",
                "after": ["a"],
                "retry": {"max_attempts": 3},
                "approve": {"title": "Go?", "group": "ops"},
                "concurrency": {"key": "{customer}", "limit": 2},
            },
            {"key": "c", "task": "t.join", "after": ["a", "b"]},
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"customer": "acme"})
    engine = client.runtime.engine
    from sqlalchemy import select

    from db.session import transaction

    with transaction(engine) as session:
        rows = {r.key: r for r in session.scalars(select(WorkflowStep))}
        edges = {
            (rows_by_id.key, down.key)
            for e in session.scalars(select(StepEdge))
            for rows_by_id in [session.get(WorkflowStep, e.upstream_id)]
            for down in [session.get(WorkflowStep, e.downstream_id)]
            if rows_by_id is not None and down is not None
        }
    assert edges == {("a", "b"), ("a", "c"), ("b", "c")}
    ra, rb, rc = rows["a"], rows["b"], rows["c"]
    assert (ra.run_id, ra.status, ra.attempt, ra.queue, ra.priority) == (
        run_id,
        "queued",
        1,
        "q1",
        7,
    )
    assert (rb.status, rb.attempt, rc.status, rc.task, rc.queue) == (
        "pending",
        0,
        "pending",
        "t.join",
        client.settings.default_queue,
    )
    assert ra.timeout_s == 2.5
    assert None not in (ra.queued_at, ra.dispatched_at)
    assert (ra.pending_upstream, rb.pending_upstream, rc.pending_upstream) == (0, 1, 2)
    assert (rb.max_attempts, rb.retry["max_attempts"]) == (3, 3)
    assert (rb.approve or {}).get("title") == "Go?"
    assert str(rb.concurrency_key).endswith(":acme")
    assert rb.concurrency_limit == 2
    assert (rb.server_releases, rb.wait_resumes, rb.cancel_requested) == (0, 0, False)
    assert (rc.approve, rc.inputs, rc.map, rc.rate_limits) == (None, None, None, None)
    assert (rc.queued_at, rc.lease_owner, rc.output, rc.error) == (None, None, None, None)
    assert {r.created_at for r in rows.values()} == {ra.created_at}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_start_whose_ids_are_known_is_one_message_its_commit_in_it(
    stack_settings: Settings,
) -> None:
    """Tenant, project and definition known to the process: the run, its event, steps
    and edges are one statement, sent alone (no BEGIN, no COMMIT): the server commits it
    as it ends. A start that finds its run (the same idempotency key) reads it after."""
    with Client(stack_settings.model_copy(update={"db_pool_size": 1})) as client:
        client.start_run(spec=SPEC)  # the ids are looked up and kept; the statement prepared
        with recorded(client.runtime.engine) as statements:
            run_id = client.start_run(spec=SPEC, idempotency_key="once")
        assert len(statements) == 1, statements
        assert statements[0].startswith("EXECUTE cairn_"), statements
        assert client.get_run(run_id).status == "queued"
        assert client.start_run(spec=SPEC, idempotency_key="once") == run_id
        assert count(client.runtime.engine, WorkflowRun) == 2


def test_a_start_whose_commit_was_lost_is_read_back_with_its_messages(client: Client) -> None:
    """``StartPlan.verify`` resolves a start whose commit went unanswered: the run made
    with the plan's own id is found, with its root steps' messages to send."""
    engine, settings = client.runtime.engine, client.settings
    client.start_run(spec=SPEC)  # ids of this database known (kept per process)
    plan = plan_start(settings, StartRequest.parse({"tenant": client.tenant, "spec": SPEC}))
    with transaction(engine) as session:
        assert plan.verify(session) is None  # not made yet
    made = run_transaction(engine, plan)
    with transaction(engine) as session:
        found = plan.verify(session)
    assert found is not None
    assert (found.run_id, found.created) == (made.run_id, True)
    assert [(m.key, m.attempt) for m in found.messages] == [("a", 1)]
    # With the caller's run id, a run with it proves nothing: the start runs again.
    theirs = plan_start(
        settings,
        StartRequest.parse({"tenant": client.tenant, "spec": SPEC, "run_id": str(made.run_id)}),
    )
    with transaction(engine) as session:
        assert theirs.verify(session) is None
