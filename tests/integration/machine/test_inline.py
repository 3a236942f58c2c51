"""Inline continuation: a chain runs step after step in one worker process, each claimed
in the transaction that completed the one before, with no broker hop."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from db.session import run_transaction, transaction
from db.types import utcnow
from tests.support.queries import event_kinds
from tests.support.sent import recorded
from tests.support.stack import Stack
from worker import blobs
from worker.blobs import BlobRef
from worker.client import Client
from worker.machine.claim import ClaimedStep, claim_step, verify_claim
from worker.machine.complete import complete_step
from worker.machine.continuation import Continued, complete_and_continue
from worker.machine.lease import Fence, Inline
from worker.machine.records import CostEntry, Records
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


# The completion's own claim, verb by verb (no worker): on PostgreSQL the next link of a
# chain is claimed by the completion's statement; on SQLite (and for what that statement
# leaves, such as a join) by a claim after it in the same transaction. Both must hand the
# next attempt exactly what a claim read back from the database hands it.

INLINE_QUEUE = "cairn"


def _inline(owner: str = "w:next", tasks: tuple[str, ...] = ("t.increment", "t.join")) -> Inline:
    return Inline(INLINE_QUEUE, frozenset(tasks), owner, 5.0)


def _claim_root(client: Client, run_id: uuid.UUID, key: str = "s0") -> ClaimedStep:
    step_id = client.get_run(run_id).step(key).id
    claimed = run_transaction(
        client.runtime.engine, lambda s: claim_step(s, step_id, 1, "w:root", 5, utcnow())
    )
    assert isinstance(claimed, ClaimedStep)
    return claimed


def _continue(
    client: Client,
    fence: Fence,
    output: Any,
    inline: Inline | None,
    records: Records | None = None,
    *,
    try_alone: bool = False,
) -> Continued:
    return run_transaction(
        client.runtime.engine,
        lambda s: complete_and_continue(
            s, fence, output, records or Records(), utcnow(), inline, try_alone=try_alone
        ),
    )


def _read_back(client: Client, claimed: ClaimedStep) -> ClaimedStep | None:
    fence = claimed.fence
    with transaction(client.runtime.engine) as session:
        return verify_claim(session, fence.step_id, fence.attempt, fence.owner)


def test_the_completion_claims_the_next_link_as_a_claim_would(client: Client) -> None:
    run_id = client.start_run(spec=chain(3), inputs={"x": 0, "extra": "kept"})
    root = _claim_root(client, run_id)
    continued = _continue(client, root.fence, {"x": 1}, _inline())
    nxt = continued.next
    assert nxt is not None
    assert nxt.key == "s1"
    assert continued.completion.messages == []  # nothing for the broker
    assert (nxt.fence.attempt, nxt.fence.owner, nxt.fence.run_id) == (1, "w:next", run_id)
    assert nxt.inputs == {"x": 0, "extra": "kept", "s0": {"x": 1}}
    assert nxt == _read_back(client, nxt)
    view = client.get_run(run_id)
    assert (view.step("s0").status, view.step("s1").status, view.step("s2").status) == (
        "succeeded",
        "running",
        "pending",
    )
    assert event_kinds(client.runtime.engine, run_id)[-2:] == ["complete_step", "claim_step"]
    # The claimed link completes and claims the next in turn (alone, as a worker would
    # complete it: its run had other steps left); the run finishes with the last.
    assert (root.run_steps_left, nxt.run_steps_left) == (3, 2)
    last = _continue(client, nxt.fence, {"x": 2}, _inline("w:last"), try_alone=True).next
    assert last is not None
    assert last.inputs["s1"] == {"x": 2}
    assert last.run_steps_left == 1
    assert last == _read_back(client, last)
    done = _continue(client, last.fence, {"x": 3}, _inline("w:none"))
    assert done.next is None
    assert done.completion.run_status == "succeeded"
    assert client.get_run(run_id).outputs == {"s2": {"x": 3}}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_on_postgresql_a_chain_link_costs_one_statement(client: Client) -> None:
    run_id = client.start_run(spec=chain(2), inputs={"x": 0})
    root = _claim_root(client, run_id)
    with recorded(client.runtime.engine) as statements:
        nxt = _continue(client, root.fence, {"x": 1}, _inline()).next
    assert nxt is not None
    assert nxt.key == "s1"
    # PREPARE once per connection (before the transaction), then the one EXECUTE that
    # completed s0 and claimed s1, and COMMIT; BEGIN rode with the EXECUTE (db/begin.py).
    executes = [s for s in statements if "PREPARE " not in s]
    assert [s.split("(")[0] for s in executes] == [executes[0].split("(")[0], "COMMIT"]
    assert executes[0].startswith("BEGIN; EXECUTE cairn_"), statements


def test_the_next_link_gets_the_output_as_stored_not_the_object_returned(
    client: Client,
) -> None:
    """A tuple comes back from JSON a list: the link run inline sees what a link sent by
    the broker, or retried, would read back."""
    run_id = client.start_run(spec=chain(2), inputs={"x": 0})
    root = _claim_root(client, run_id)
    returned = {"ids": (1, 2), "b": 1, "a": 2}
    nxt = _continue(client, root.fence, returned, _inline()).next
    assert nxt is not None
    assert nxt.inputs["s0"] == {"ids": [1, 2], "b": 1, "a": 2}
    assert isinstance(nxt.inputs["s0"]["ids"], list)
    assert nxt.inputs["s0"] is not returned
    assert nxt == _read_back(client, nxt)


def test_a_stored_output_reaches_the_next_link_as_its_marker(client: Client) -> None:
    run_id = client.start_run(spec=chain(2), inputs={"x": 0})
    root = _claim_root(client, run_id)
    blob = BlobRef("runs/x/s0/output.json", "ab" * 32, 10)
    nxt = _continue(client, root.fence, blob, _inline()).next
    assert nxt is not None
    assert nxt.inputs["s0"] == blobs.marker(blob.key, blob.sha256)
    assert nxt == _read_back(client, nxt)


def test_what_the_worker_cannot_run_goes_to_the_broker(client: Client) -> None:
    run_id = client.start_run(spec=chain(2), inputs={"x": 0})
    root = _claim_root(client, run_id)
    continued = _continue(client, root.fence, {"x": 1}, _inline(tasks=("t.other",)))
    assert continued.next is None
    assert [(m.key, m.attempt) for m in continued.completion.messages] == [("s1", 1)]
    assert client.get_run(run_id).step("s1").status == "queued"


#: Two roots joined, then one more step.
JOIN = {
    "name": "join-inline",
    "steps": [
        {"key": "a", "task": "t.increment"},
        {"key": "b", "task": "t.increment"},
        {"key": "j", "task": "t.join", "after": ["a", "b"]},
        {"key": "k", "task": "t.increment", "after": ["j"]},
    ],
}


def test_a_join_and_a_spending_step_are_claimed_after_the_completion(client: Client) -> None:
    """A dependent with another upstream, and any dependent of a step that spent (its
    budget check may pause the run first), are claimed by the ordinary claim."""
    run_id = client.start_run(spec=JOIN, inputs={"x": 0})
    a, b = _claim_root(client, run_id, "a"), _claim_root(client, run_id, "b")
    assert _continue(client, a.fence, {"x": 1}, _inline("w:a")).next is None  # j waits for b
    joined = _continue(client, b.fence, {"x": 2}, _inline("w:j")).next
    assert joined is not None
    assert joined.key == "j"
    assert (joined.inputs["a"], joined.inputs["b"]) == ({"x": 1}, {"x": 2})
    assert joined == _read_back(client, joined)
    spent = Records([CostEntry(1, "openai", "gpt", 1, 1, Decimal("0.01"))], [])
    after = _continue(client, joined.fence, {"x": 3}, _inline("w:k"), spent).next
    assert after is not None
    assert after.key == "k"
    assert after.inputs["j"] == {"x": 3}
    assert after == _read_back(client, after)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_link_that_cannot_be_the_last_commits_with_its_one_statement(
    stack_settings: Settings,
) -> None:
    """A completion with no records whose run had other steps left goes alone: its one
    EXECUTE, no BEGIN, no COMMIT: the server commits it as it ends."""
    with Client(stack_settings.model_copy(update={"db_pool_size": 1})) as client:
        run_id = client.start_run(spec=chain(3), inputs={"x": 0})
        root = _claim_root(client, run_id)
        # The first completion on the connection prepares the statement (a message before).
        nxt = _continue(client, root.fence, {"x": 1}, _inline(), try_alone=True).next
        assert nxt is not None
        with recorded(client.runtime.engine) as statements:
            last = _continue(client, nxt.fence, {"x": 2}, _inline("w:last"), try_alone=True).next
        assert last is not None
        assert len(statements) == 1, statements
        assert statements[0].startswith("EXECUTE cairn_"), statements
        assert last == _read_back(client, last)
        assert client.get_run(run_id).step("s1").status == "succeeded"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("stored", [False, True], ids=["inline output", "stored output"])
def test_the_last_step_finishes_its_run_in_its_one_statement(
    stack_settings: Settings, stored: bool
) -> None:
    """A run's last step, with nothing else to do at the run's end, finishes the run in
    its completion's statement, sent alone: one message for the step and the run."""
    spec = {
        "name": "two-sinks",
        "steps": [{"key": "a", "task": "t.increment"}, {"key": "b", "task": "t.increment"}],
    }
    blob = BlobRef("runs/x/b/output.json", "cd" * 32, 10)
    with Client(stack_settings) as client:
        run_id = client.start_run(spec=spec, inputs={"x": 0})
        a, b = _claim_root(client, run_id, "a"), _claim_root(client, run_id, "b")
        assert _continue(client, a.fence, {"x": 1}, None, try_alone=True).completion.committed
        with recorded(client.runtime.engine) as statements:
            ended = _continue(client, b.fence, blob if stored else {"x": 2}, None, try_alone=True)
        assert ended.completion.committed
        assert ended.completion.run_status == "succeeded"
        executes = [s for s in statements if "PREPARE " not in s]
        assert len(executes) == 1, statements
        assert executes[0].startswith("EXECUTE cairn_"), statements
        with client.runtime.engine.connect() as conn:
            status, finished_at, outputs = conn.execute(
                text("SELECT status, finished_at, outputs FROM workflow_runs WHERE id = :r"),
                {"r": run_id},
            ).one()
        assert (status, finished_at is not None) == ("succeeded", True)
        # A stored output is kept as its marker, as ending.finish_run keeps it.
        b_output = blobs.marker(blob.key, blob.sha256) if stored else {"x": 2}
        assert outputs == {"a": {"x": 1}, "b": b_output}
        assert event_kinds(client.runtime.engine, run_id)[-2:] == ["complete_step", "finish_run"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_run_ending_with_more_to_do_is_finished_after_the_completion(client: Client) -> None:
    """A last step that spent (the run's budgets are weighed first) leaves the finish to a
    statement of its own in the same transaction: the run ends all the same."""
    spec = {"name": "one-spending", "steps": [{"key": "a", "task": "t.increment"}]}
    run_id = client.start_run(spec=spec, inputs={"x": 0})
    a = _claim_root(client, run_id, "a")
    spent = Records([CostEntry(1, "openai", "gpt", 1, 1, Decimal("0.01"))], [])
    with recorded(client.runtime.engine) as statements:
        ended = _continue(client, a.fence, {"x": 1}, None, spent, try_alone=True)
    assert not ended.completion.committed
    assert ended.completion.run_status == "succeeded"
    assert statements[-1] == "COMMIT"
    run = client.get_run(run_id)
    assert (run.status, run.outputs, run.cost_usd) == (
        "succeeded",
        {"a": {"x": 1}},
        Decimal("0.01"),
    )
    assert event_kinds(client.runtime.engine, run_id).count("finish_run") == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_join_released_by_a_completion_sent_alone_goes_by_the_broker(client: Client) -> None:
    """Nothing is written after a statement that committed itself: a join it released
    (which its statement does not claim) is sent, not claimed in a second transaction."""
    run_id = client.start_run(spec=JOIN, inputs={"x": 0})
    a, b = _claim_root(client, run_id, "a"), _claim_root(client, run_id, "b")
    assert _continue(client, a.fence, {"x": 1}, _inline("w:a"), try_alone=True).next is None
    with recorded(client.runtime.engine) as statements:
        joined = _continue(client, b.fence, {"x": 2}, _inline("w:j"), try_alone=True)
    assert joined.completion.committed
    assert joined.next is None
    assert [(m.key, m.attempt) for m in joined.completion.messages] == [("j", 1)]
    assert [s.split("(")[0] for s in statements if "PREPARE " not in s] == [
        statements[-1].split("(")[0]
    ]
    assert client.get_run(run_id).step("j").status == "queued"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_completion_that_releases_a_map_writes_nothing_alone_and_expands_it_with_it(
    client: Client,
) -> None:
    """Its map dependent must be expanded in the completion's transaction: tried alone,
    the statement writes nothing, and runs again in a transaction that does both."""
    spec = {
        "name": "map-alone",
        "steps": [
            {"key": "split", "task": "t.split"},
            {"key": "each", "after": ["split"], "map": {"over": "split.items", "task": "t.square"}},
            {"key": "sum", "task": "t.collect", "after": ["each"]},
        ],
    }
    run_id = client.start_run(spec=spec, inputs={"n": 3})
    split = _claim_root(client, run_id, "split")
    with recorded(client.runtime.engine) as statements:
        done = _continue(client, split.fence, {"items": [1, 2, 3]}, _inline(), try_alone=True)
    assert not done.completion.committed
    executes = [s for s in statements if "PREPARE " not in s]
    assert executes[0].startswith("EXECUTE cairn_"), executes  # alone: wrote nothing
    assert executes[1].startswith("BEGIN; EXECUTE cairn_"), executes
    assert executes[-1] == "COMMIT"
    with client.runtime.engine.connect() as conn:
        xids = conn.execute(
            text(
                "SELECT key, xmin::text FROM workflow_steps WHERE run_id = :r"
                " AND key IN ('split', 'each')"
            ),
            {"r": run_id},
        ).all()
        elements = conn.scalar(
            text(
                "SELECT count(*) FROM workflow_steps e JOIN workflow_steps m"
                " ON m.id = e.map_parent_id WHERE m.run_id = :r AND m.key = 'each'"
            ),
            {"r": run_id},
        )
    assert len({xid for _, xid in xids}) == 1, xids  # one transaction wrote both
    assert elements == 3


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_branch_completing_alone_beside_another_leaves_the_run_to_one_transaction(
    client: Client,
) -> None:
    """Two branches complete at once, one of them alone. It locks the run row first, so
    it sees the other's count (one step left, its own) and writes nothing alone; run
    again in a transaction, it records the step and finishes the run in that one."""
    spec = {
        "name": "two-branches",
        "steps": [{"key": "a", "task": "t.increment"}, {"key": "b", "task": "t.increment"}],
    }
    run_id = client.start_run(spec=spec, inputs={"x": 0})
    a, b = _claim_root(client, run_id, "a"), _claim_root(client, run_id, "b")
    assert (a.run_steps_left, b.run_steps_left) == (2, 2)
    engine = client.runtime.engine
    ended: list[Continued] = []
    other = threading.Thread(
        target=lambda: ended.append(_continue(client, b.fence, {"x": 2}, None, try_alone=True))
    )
    with transaction(engine) as session:
        complete_step(session, a.fence, {"x": 1}, Records(), utcnow())  # holds the run row
        other.start()
        _until_a_statement_waits_for_a_lock(engine)
    other.join(30)
    assert [c.completion.run_status for c in ended] == ["succeeded"]
    run = client.get_run(run_id)
    assert run.status == "succeeded"
    # a's output was committed after b's statement took its snapshot: the run's outputs
    # are gathered where it is seen.
    assert run.outputs == {"a": {"x": 1}, "b": {"x": 2}}
    with engine.connect() as conn:
        step_xid = conn.scalar(
            text("SELECT xmin::text FROM workflow_steps WHERE id = :i"), {"i": b.fence.step_id}
        )
        run_xid = conn.scalar(
            text("SELECT xmin::text FROM workflow_runs WHERE id = :i"), {"i": run_id}
        )
    assert step_xid == run_xid  # b's success and the run's finish: one transaction


def _until_a_statement_waits_for_a_lock(engine: Engine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.scalar(waiting):
                return
        time.sleep(0.02)
    raise AssertionError("no statement came to wait for the run row's lock")
