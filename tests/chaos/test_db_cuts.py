"""Database connections cut under load: every backend of the workers and beat in the
suite's database terminated every second while runs checkpoint. A lost connection is
never the step's fault: every run succeeds, each effect is committed exactly once and no
attempt is spent."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from tests.chaos import harness
from tests.chaos.conftest import CHAOS_DB
from tests.support.stack import Stack
from worker.client import Client


@dataclass(frozen=True)
class Size:
    runs: int
    units: int
    pause_s: float
    cut_for_s: float


SIZE = Size(60, 10, 0.1, 15.0) if harness.FULL else Size(12, 8, 0.2, 5.0)
CUT_EVERY_S = 1.0
STEPS = 2


@pytest.mark.timeout(600 if harness.FULL else 150)
def test_runs_survive_database_connections_cut_every_second(
    chaos_stack: Stack, chaos_client: Client, observer: Engine
) -> None:
    chaos_stack.start_cairn_worker(concurrency=2)
    chaos_stack.start_cairn_worker(concurrency=2)
    chaos_stack.start_cairn_beat()
    # Two steps: the first's completion goes alone (its commit in its one statement),
    # the second's finishes the run in a transaction; cuts land on both.
    spec = harness.chain(STEPS)
    inputs = {"units": SIZE.units, "pause_s": SIZE.pause_s}
    for _ in range(SIZE.runs):
        chaos_client.start_run(spec=spec, inputs=inputs)
    cutter = harness.BackendCutter(CHAOS_DB, CUT_EVERY_S, SIZE.cut_for_s)
    cutter.start()
    cutter.join(SIZE.cut_for_s + 30)
    in_flight_after_cuts = SIZE.runs - sum(
        harness.run_statuses(observer).get(s, 0) for s in harness.ENDED
    )
    harness.wait_runs_ended(observer, SIZE.runs, timeout=120 if harness.FULL else 60)
    t = harness.tally(observer, SIZE.runs, SIZE.units, steps_per_run=STEPS, artifacts=False)
    harness.report(
        t.line("db cuts")
        + f" | cuts: {cutter.rounds} rounds, {cutter.terminated} backends terminated, "
        f"{in_flight_after_cuts} runs still in flight when the cuts ended"
    )
    assert not cutter.errors, cutter.errors
    assert cutter.rounds >= SIZE.cut_for_s / CUT_EVERY_S - 1, "the cuts must go on for the window"
    assert cutter.terminated > 0, "no backend of the workers was cut: the case proved nothing"
    harness.assert_nothing_lost_or_doubled(t, SIZE.runs, steps_per_run=STEPS)
    assert t.fail_step_events == 0, "a lost connection was recorded as the step's failure"
    assert t.later_attempts == 0, "every step must finish at attempt 1: no attempt spent"
