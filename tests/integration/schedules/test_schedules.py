"""Schedules fire once per slot with two beats running; pause stops them; missed slots
follow the schedule's policy after a downtime."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select, update

from db.models import Schedule, WorkflowRun
from db.session import run_transaction, transaction
from db.types import utcnow
from tests.support.stack import Stack
from worker.client import Client
from worker.machine.schedules import due_fires

SPEC = {"name": "tick", "steps": [{"key": "a", "task": "t.item"}]}


def scheduled_keys(client: Client) -> list[str]:
    with transaction(client.runtime.engine) as session:
        keys = session.scalars(
            select(WorkflowRun.idempotency_key).where(
                WorkflowRun.idempotency_key.like("schedule:%")
            )
        ).all()
    return sorted(k for k in keys if k)


def test_every_second_fires_once_per_slot_with_two_beats(stack: Stack, client: Client) -> None:
    client.register_definition(SPEC)
    stack.start_worker(concurrency=2)
    stack.start_beat()
    stack.start_beat()
    schedule_id = client.add_schedule(
        "every-second", "tick", "* * * * * *", missed_policy="catch_up", catch_up_max=5
    )
    time.sleep(10)
    client.pause_schedule(schedule_id)
    time.sleep(2)  # ticks already under way finish
    keys = scheduled_keys(client)
    slots = [k.split(":", 2)[2] for k in keys]
    assert len(slots) == len(set(slots))  # one run per slot
    assert 8 <= len(slots) <= 12, slots
    seconds = sorted(int(s[17:19]) + 60 * int(s[14:16]) for s in slots)
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))  # no slot missed

    time.sleep(3)
    assert scheduled_keys(client) == keys  # paused: nothing new
    runs = client.list_runs(workflow="tick", limit=100)
    assert len(runs) == len(keys)
    deadline = time.monotonic() + 30
    while any(r.status != "succeeded" for r in client.list_runs(workflow="tick", limit=100)):
        assert time.monotonic() < deadline, "scheduled runs did not finish"
        time.sleep(0.2)


def test_missed_slots_follow_the_policy_after_downtime(client: Client) -> None:
    client.register_definition(SPEC)
    skip = client.add_schedule("skipper", "tick", "* * * * * *")
    catch = client.add_schedule(
        "catcher", "tick", "* * * * * *", missed_policy="catch_up", catch_up_max=3
    )
    engine = client.runtime.engine
    down_since = utcnow() - timedelta(seconds=30)  # nothing ticked for 30 s
    with transaction(engine) as session:
        session.execute(update(Schedule).values(next_fire_at=down_since))
    fires = run_transaction(engine, lambda s: due_fires(s, utcnow()))
    by_schedule = {sid: [f for f in fires if f.schedule_id == sid] for sid in (skip, catch)}
    assert len(by_schedule[skip]) == 1
    assert len(by_schedule[catch]) == 3
    newest = max(f.slot for f in fires)
    assert newest > down_since + timedelta(seconds=25)
    assert [f.slot for f in by_schedule[catch]] == [
        newest - timedelta(seconds=2),
        newest - timedelta(seconds=1),
        newest,
    ]
