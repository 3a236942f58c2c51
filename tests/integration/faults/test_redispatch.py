"""The reconciler sends lost messages again after one lease, but not those still waiting
their turn in a busy broker queue (real Redis)."""

from __future__ import annotations

import pytest

from db.session import run_transaction
from db.types import utcnow
from tests.support import servers
from worker.client import Client
from worker.machine.recovery import redispatch_stale, stale_queues


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
