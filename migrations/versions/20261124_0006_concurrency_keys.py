"""Flow control: a step's concurrency key and limit, the ``throttled`` state, and the
rate limits a step takes before its code runs; a run's trace context (OpenTelemetry); a tenant's quota of running steps.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEP_BEFORE = (
    "status IN ('pending', 'queued', 'running', 'retrying', 'waiting', 'succeeded', "
    "'failed', 'cancelled')"
)
STEP_AFTER = (
    "status IN ('pending', 'queued', 'throttled', 'running', 'retrying', 'waiting', "
    "'succeeded', 'failed', 'cancelled')"
)
INDEX = "ix_workflow_steps_concurrency_key_status_queued_at"


def _swap_check(sql: str) -> None:
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_constraint(op.f("ck_workflow_steps_status_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_workflow_steps_status_valid"), sql)


def upgrade() -> None:
    _swap_check(STEP_AFTER)
    with op.batch_alter_table("workflow_steps") as batch:
        batch.add_column(sa.Column("concurrency_key", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("rate_limits", db.types.JSONValue, nullable=True))
        batch.create_index(op.f(INDEX), ["concurrency_key", "status", "queued_at"])
    with op.batch_alter_table("workflow_runs") as batch:
        batch.add_column(sa.Column("trace_context", db.types.JSONValue, nullable=True))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("max_running_steps", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("max_running_steps")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("trace_context")
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_index(op.f(INDEX))
        batch.drop_column("rate_limits")
        batch.drop_column("concurrency_limit")
        batch.drop_column("concurrency_key")
    _swap_check(STEP_BEFORE)
