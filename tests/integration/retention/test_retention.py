"""Retention of whole runs: an ended run and everything it owns go, its rows in every table
and its objects in the store; nothing of a run that has not ended is touched.

Real worker processes, SQLite and PostgreSQL, the local folder (S3: test_s3.py)."""

from __future__ import annotations

import time

from tests.integration.retention.world import age, build_world, check_deleted_and_kept, start_live
from tests.support.stack import Stack
from worker.artifacts import make_store
from worker.client import Client
from worker.settings import Settings


def test_the_beat_task_deletes_an_ended_run_and_all_it_owns_but_nothing_of_a_live_one(
    ret_stack: Stack, ret_client: Client, small_inline: Settings
) -> None:
    from worker.maintenance import purge_old_runs, run_retention

    def beat_retention() -> None:  # the body of the cairn.retention task
        purge_old_runs(runtime)
        run_retention(runtime)

    ret_stack.start_worker()
    world = build_world(ret_client)
    live_id = start_live(ret_client, ret_stack)
    runtime = ret_client.runtime
    runtime.settings = runtime.settings.model_copy(update={"run_retention_days": 1e-6})
    time.sleep(0.2)  # the world ended more than 1e-6 days (86 ms) ago
    try:
        check_deleted_and_kept(ret_client, make_store(small_inline), world, live_id, beat_retention)
    finally:
        ret_client.cancel(live_id)


def test_retention_is_off_by_default_and_spares_recent_runs(
    ret_stack: Stack, ret_client: Client
) -> None:
    from worker.maintenance import purge_old_runs

    ret_stack.start_worker()
    run_id, parent_id = build_world(ret_client)
    runtime = ret_client.runtime
    assert runtime.settings.run_retention_days is None
    assert purge_old_runs(runtime) == 0
    runtime.settings = runtime.settings.model_copy(update={"run_retention_days": 1.0})
    assert purge_old_runs(runtime) == 0  # ended moments ago, kept for a day
    age(runtime.engine, run_id, 2)
    age(runtime.engine, parent_id, 2)
    assert purge_old_runs(runtime) == 2  # the child first, then its parent
    assert ret_client.list_runs() == []
