"""Leaner writes on the hot path: four single-column indexes that a composite index led
by the same column already serves are dropped (each was one more write per step or
event), and the runs table leaves room on its pages so that the per-step update of a
run's counters can be a HOT update (PostgreSQL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

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


def upgrade() -> None:
    for table, column in REDUNDANT:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(op.f(f"ix_{table}_{column}"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE workflow_runs SET (fillfactor = {RUNS_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE workflow_runs RESET (fillfactor)")
    for table, column in REDUNDANT:
        with op.batch_alter_table(table) as batch:
            batch.create_index(op.f(f"ix_{table}_{column}"), [column])
