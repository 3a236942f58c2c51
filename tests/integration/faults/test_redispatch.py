"""The reconciler sends lost messages again after one lease (those Redis lost at once), but
not those still waiting their turn in a busy broker queue (real Redis)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from db.models import WorkflowStep
from db.session import run_transaction, transaction
from db.types import utcnow
from tests.support import servers
from tests.support.stack import Stack
from worker.client import Client
from worker.dispatch import EPOCH_KEY
from worker.machine.messages import StepMessage
from worker.machine.recovery import redispatch_stale, stale_queues
from worker.maintenance import reconcile


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """What is under test is the broker's side; the embedded database suffices."""
    return str(request.param)


def test_lost_messages_are_sent_again_and_waiting_ones_are_not(client: Client) -> None:
    engine, dispatcher = client.runtime.engine, client.runtime.dispatcher
    spec = {"name": "one", "steps": [{"key": "s", "task": "t.increment"}]}
    run_id = client.start_run(spec=spec)  # no worker: the message waits in Redis

    queues = run_transaction(engine, lambda s: stale_queues(s, utcnow(), 0))
    assert queues == {"cairn"}
    busy = dispatcher.busy_queues(queues)
    assert busy == {"cairn"}
    waiting = run_transaction(
        engine,
        lambda s: redispatch_stale(s, utcnow(), 0, busy_queues=busy, busy_after_s=60),
    )
    assert waiting == [], "a message waiting its turn is not sent twice"

    servers.redis_client().flushdb()  # Redis restarted empty: the message is lost
    busy = dispatcher.busy_queues(queues)
    assert busy == set()
    lost = run_transaction(
        engine,
        lambda s: redispatch_stale(s, utcnow(), 0, busy_queues=busy, busy_after_s=60),
    )
    assert [m.run_id for m in lost] == [run_id]


def _take(r: redis.Redis, step_id: object, queue: str) -> None:
    """Do what a worker's reserve does with the step's message (kombu's Redis transport:
    out of the queue's list, kept aside unacknowledged), a minute ago; then the worker
    is gone."""
    for key in r.keys(f"{queue}*"):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            message = json.loads(raw)
            if message["headers"]["id"].startswith(f"{step_id}:"):
                r.lrem(key, 1, raw)
                tag = "dead-worker-tag"
                r.zadd("unacked_index", {tag: time.time() - 60})
                r.hset("unacked", tag, json.dumps([message, queue, queue]))
                return
    raise AssertionError(f"no message of step {step_id} in {queue}")


def test_a_message_a_dead_worker_took_is_sent_again_even_in_a_busy_queue(
    client: Client,
) -> None:
    engine, dispatcher = client.runtime.engine, client.runtime.dispatcher
    spec = {"name": "one", "steps": [{"key": "s", "task": "t.increment"}]}
    taken_run, waiting_run = client.start_run(spec=spec), client.start_run(spec=spec)
    taken = client.get_run(taken_run).step("s").id
    with transaction(engine) as session:  # dispatched two minutes ago, taken one ago
        session.execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == taken)
            .values(dispatched_at=utcnow() - timedelta(minutes=2))
        )
    _take(servers.redis_client(), taken, "cairn")

    busy = dispatcher.busy_queues({"cairn"})
    assert busy == {"cairn"}, "the other run's message still waits there"
    stranded = dispatcher.stranded(30)
    assert [(t.step_id, t.attempt) for t in stranded] == [(taken, 1)]
    assert dispatcher.stranded(120) == [], "taken a minute ago, not two"

    def resend() -> list[StepMessage]:
        return run_transaction(
            engine,
            lambda s: redispatch_stale(
                s, utcnow(), 0, busy_queues=busy, busy_after_s=600, stranded=stranded
            ),
        )

    assert [m.run_id for m in resend()] == [taken_run], "the waiting one is not sent twice"
    assert waiting_run != taken_run
    # Sent again after it was taken: the same taken message does not send it again.
    assert resend() == []


def test_after_redis_lost_its_messages_the_steps_sent_before_go_again_in_a_busy_queue(
    client: Client,
) -> None:
    engine, dispatcher = client.runtime.engine, client.runtime.dispatcher
    spec = {"name": "one", "steps": [{"key": "s", "task": "t.increment"}]}
    before = dispatcher.broker_epoch()
    assert before is not None
    assert dispatcher.broker_epoch() == before, "the mark stays while Redis keeps it"
    lost_run = client.start_run(spec=spec)
    lost = client.get_run(lost_run).step("s").id
    with transaction(engine) as session:
        session.execute(
            update(WorkflowStep)
            .where(WorkflowStep.id == lost)
            .values(dispatched_at=utcnow() - timedelta(minutes=2))
        )
    servers.redis_client().flushdb()  # Redis restarted empty: the message is gone
    epoch = dispatcher.broker_epoch()
    assert epoch is not None
    assert epoch > before
    client.start_run(spec=spec)  # sent after: it waits its turn in a busy queue
    busy = dispatcher.busy_queues({"cairn"})
    assert busy == {"cairn"}

    def resend() -> list[StepMessage]:
        return run_transaction(
            engine,
            lambda s: redispatch_stale(
                s, utcnow(), 0, busy_queues=busy, busy_after_s=600, lost_before=epoch
            ),
        )

    assert [m.run_id for m in resend()] == [lost_run]
    assert resend() == [], "sent again once, then it waits its turn like the others"


def _all_ids(lists: dict[str, list[str]]) -> list[str]:
    return sorted(task_id for ids in lists.values() for task_id in ids)


def _queued_ids(r: redis.Redis, queue: str) -> dict[str, list[str]]:
    """The task ids of the messages in each of ``queue``'s priority lists (kombu's Redis
    transport keeps one list per level; the bare name is the first served)."""
    found: dict[str, list[str]] = {}
    for key in r.keys(f"{queue}*"):
        if r.type(key) == b"list":
            name = key.decode().replace("\x06\x16", ":")
            found[name] = [json.loads(raw)["headers"]["id"] for raw in r.lrange(key, 0, -1)]
    return found


def test_after_redis_lost_its_messages_a_crashed_attempt_goes_again_at_once_and_first(
    client: Client,
) -> None:
    """Its message lost a moment after the reaper sent it (Redis restarted empty), a
    crashed attempt is sent again at the reconciler's next tick, not a window later, and
    ahead of the backlog; fresh work sent before goes again at its own priority; and what
    was sent again is not found lost again at the tick after."""
    r = servers.redis_client()
    dispatcher = client.runtime.dispatcher
    spec = {"name": "one", "steps": [{"key": "s", "task": "t.increment"}]}
    fresh_run, crashed_run = client.start_run(spec=spec), client.start_run(spec=spec)
    fresh = client.get_run(fresh_run).step("s").id
    crashed = client.get_run(crashed_run).step("s").id
    with transaction(client.runtime.engine) as session:  # queued again by the reaper
        session.execute(update(WorkflowStep).where(WorkflowStep.id == crashed).values(attempt=2))
    assert dispatcher.broker_epoch() is not None
    r.flushdb()  # Redis restarted empty: both messages are gone
    assert dispatcher.broker_epoch() is not None  # a tick found the mark missing
    after_run = client.start_run(spec=spec)  # sent after: its message is there
    after = client.get_run(after_run).step("s").id

    reconcile(client.runtime)
    queued = _queued_ids(r, "cairn")
    assert queued.pop("cairn") == [f"{crashed}:2"], queued  # the list served first
    assert _all_ids(queued) == sorted([f"{fresh}:1", f"{after}:1"])

    reconcile(client.runtime)
    again = _all_ids(_queued_ids(r, "cairn"))
    assert again == sorted([f"{crashed}:2", f"{fresh}:1", f"{after}:1"])


def test_a_step_sent_again_by_the_tick_that_found_redis_emptied_is_not_lost_again(
    client: Client,
) -> None:
    """The tick that finds the mark missing stamps the epoch, then dates what it sends
    again no earlier than that: the next tick does not take it for lost once more."""
    r = servers.redis_client()
    spec = {"name": "one", "steps": [{"key": "s", "task": "t.increment"}]}
    step = client.get_run(client.start_run(spec=spec)).step("s").id
    r.flushdb()  # Redis restarted empty, and no tick has seen it yet
    for _ in range(3):
        reconcile(client.runtime)
    assert _all_ids(_queued_ids(r, "cairn")) == [f"{step}:1"]


def test_a_worker_coming_up_on_an_empty_redis_stamps_its_epoch(
    stack: Stack, client: Client
) -> None:
    """A new Redis has no mark: the first worker stamps one as it comes up, so a backlog
    sent after it (here to a queue no worker takes) is not taken for lost by beat's
    first look."""
    r = servers.redis_client()
    assert r.get(EPOCH_KEY) is None
    stack.start_worker()
    stamped = r.get(EPOCH_KEY)
    assert stamped is not None
    spec = {"name": "one", "steps": [{"key": "s", "task": "t.increment", "queue": "elsewhere"}]}
    step = client.get_run(client.start_run(spec=spec)).step("s").id
    reconcile(client.runtime)
    assert _all_ids(_queued_ids(r, "elsewhere")) == [f"{step}:1"]
    assert r.get(EPOCH_KEY) == stamped
