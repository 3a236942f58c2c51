"""Leaner writes on the hot path: four single-column indexes that a composite index led
by the same column already serves are dropped (each was one more write per step or
event); the step indexes led by status become partial indexes of the rows their queries
look for (a change of status writes the one index of its new status, not five); and the
runs table leaves room on its pages so that the per-step update of a run's counters can
be a HOT update (PostgreSQL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column): the index dropped, and the index that serves its lookups instead.
REDUNDANT = (
    ("run_events", "run_id"),  # ix_run_events_run_id_created_at
    ("workflow_steps", "run_id"),  # uq_workflow_steps_run_id_key
    ("step_edges", "upstream_id"),  # uq_step_edges_upstream_id_downstream_id
    ("workflow_runs", "tenant_id"),  # uq_workflow_runs_tenant_id_idempotency_key
)
RUNS_FILLFACTOR = 80
#: (columns before, columns after, the condition of the partial index after).
PARTIAL = (
    (["status", "lease_expires_at"], ["lease_expires_at"], "status = 'running'"),
    (["status", "dispatched_at"], ["dispatched_at"], "status = 'queued'"),
    (["status", "next_attempt_at"], ["next_attempt_at"], "status = 'retrying'"),
    (
        ["map_parent_id", "status", "map_index"],
        ["map_parent_id", "status", "map_index"],
        "map_parent_id IS NOT NULL",
    ),
    (
        ["concurrency_key", "status", "queued_at"],
        ["concurrency_key", "status", "queued_at"],
        "concurrency_key IS NOT NULL",
    ),
)


def _name(columns: list[str]) -> str:
    return op.f("ix_workflow_steps_" + "_".join(columns))


def upgrade() -> None:
    for table, column in REDUNDANT:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(op.f(f"ix_{table}_{column}"))
    with op.batch_alter_table("workflow_steps") as batch:
        for before, after, where in PARTIAL:
            batch.drop_index(_name(before))
            batch.create_index(
                _name(after),
                after,
                postgresql_where=sa.text(where),
                sqlite_where=sa.text(where),
            )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE workflow_runs SET (fillfactor = {RUNS_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE workflow_runs RESET (fillfactor)")
    with op.batch_alter_table("workflow_steps") as batch:
        for before, after, _ in PARTIAL:
            batch.drop_index(_name(after))
            batch.create_index(_name(before), before)
    for table, column in REDUNDANT:
        with op.batch_alter_table(table) as batch:
            batch.create_index(op.f(f"ix_{table}_{column}"), [column])
