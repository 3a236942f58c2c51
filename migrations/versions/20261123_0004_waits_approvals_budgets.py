"""Waiting steps and paused runs: step waits, signals, approval requests as records,
tenant spend limits, and the notification outbox.

The old ``approval_requests`` table was never written by any version of cairn, so it is
replaced rather than altered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_BEFORE = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
RUN_AFTER = "status IN ('queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled')"
STEP_BEFORE = (
    "status IN ('pending', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')"
)
STEP_AFTER = (
    "status IN ('pending', 'queued', 'running', 'retrying', 'waiting', 'succeeded', "
    "'failed', 'cancelled')"
)


def _swap_check(table: str, name: str, sql: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(name), type_="check")
        batch.create_check_constraint(op.f(name), sql)


def upgrade() -> None:
    _swap_check("workflow_runs", "ck_workflow_runs_status_valid", RUN_AFTER)
    _swap_check("workflow_steps", "ck_workflow_steps_status_valid", STEP_AFTER)
    with op.batch_alter_table("workflow_steps") as batch:
        batch.add_column(
            sa.Column("wait_resumes", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("approve", db.types.JSONValue, nullable=True))
        batch.create_check_constraint(
            op.f("ck_workflow_steps_wait_resumes_non_negative"), "wait_resumes >= 0"
        )
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("daily_limit_usd", sa.Numeric(18, 8), nullable=True))
        batch.add_column(sa.Column("monthly_limit_usd", sa.Numeric(18, 8), nullable=True))

    op.drop_index(op.f("ix_approval_requests_step_id"), table_name="approval_requests")
    op.drop_index(op.f("ix_approval_requests_status_expires_at"), table_name="approval_requests")
    op.drop_index(op.f("ix_approval_requests_run_id"), table_name="approval_requests")
    op.drop_table("approval_requests")
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("details", db.types.JSONValue, nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("group_name", sa.String(length=200), nullable=True),
        sa.Column("on_timeout", sa.String(length=16), nullable=False),
        sa.Column("escalate_to", sa.String(length=200), nullable=True),
        sa.Column("escalated_from_id", sa.Uuid(), nullable=True),
        sa.Column("timeout_s", sa.Double(), nullable=True),
        sa.Column("expires_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("decided_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("new_budget_usd", sa.Numeric(18, 8), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')",
            name=op.f("ck_approval_requests_status_valid"),
        ),
        sa.CheckConstraint(
            "kind IN ('step', 'budget')", name=op.f("ck_approval_requests_kind_valid")
        ),
        sa.CheckConstraint(
            "on_timeout IN ('fail', 'approve', 'escalate')",
            name=op.f("ck_approval_requests_on_timeout_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_approval_requests_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_approval_requests_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_approval_requests_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["escalated_from_id"],
            ["approval_requests.id"],
            name=op.f("fk_approval_requests_escalated_from_id_approval_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    op.create_index(op.f("ix_approval_requests_run_id"), "approval_requests", ["run_id"])
    op.create_index(op.f("ix_approval_requests_step_id"), "approval_requests", ["step_id"])
    op.create_index(
        op.f("ix_approval_requests_escalated_from_id"), "approval_requests", ["escalated_from_id"]
    )
    op.create_index(
        op.f("ix_approval_requests_status_expires_at"),
        "approval_requests",
        ["status", "expires_at"],
    )
    op.create_index(
        op.f("ix_approval_requests_tenant_id_status_created_at"),
        "approval_requests",
        ["tenant_id", "status", "created_at"],
    )

    op.create_table(
        "step_waits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("approval_id", sa.Uuid(), nullable=True),
        sa.Column("wake_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", db.types.JSONValue, nullable=True),
        sa.Column("resolved_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('approval', 'signal', 'sleep', 'budget')",
            name=op.f("ck_step_waits_kind_valid"),
        ),
        sa.CheckConstraint(
            "status IN ('waiting', 'done')", name=op.f("ck_step_waits_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_requests.id"],
            name=op.f("fk_step_waits_approval_id_approval_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_step_waits_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_step_waits_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_waits")),
        sa.UniqueConstraint("step_id", "seq", name=op.f("uq_step_waits_step_id_seq")),
    )
    op.create_index(op.f("ix_step_waits_approval_id"), "step_waits", ["approval_id"])
    op.create_index(op.f("ix_step_waits_run_id"), "step_waits", ["run_id"])
    op.create_index(
        op.f("ix_step_waits_run_id_status_kind_name"),
        "step_waits",
        ["run_id", "status", "kind", "name"],
    )
    op.create_index(op.f("ix_step_waits_status_wake_at"), "step_waits", ["status", "wake_at"])
    op.create_index(op.f("ix_step_waits_step_id"), "step_waits", ["step_id"])

    op.create_table(
        "signals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("payload", db.types.JSONValue, nullable=True),
        sa.Column("wait_id", sa.Uuid(), nullable=True),
        sa.Column("delivered_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_signals_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["wait_id"],
            ["step_waits.id"],
            name=op.f("fk_signals_wait_id_step_waits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint("wait_id", name=op.f("uq_signals_wait_id")),
    )
    op.create_index(op.f("ix_signals_run_id"), "signals", ["run_id"])
    op.create_index(
        op.f("ix_signals_run_id_name_delivered_at"), "signals", ["run_id", "name", "delivered_at"]
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("event", sa.String(length=50), nullable=False),
        sa.Column("data", db.types.JSONValue, nullable=False),
        sa.Column("sent_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_notifications_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(op.f("ix_notifications_run_id"), "notifications", ["run_id"])
    op.create_index(
        op.f("ix_notifications_sent_at_created_at"), "notifications", ["sent_at", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("signals")
    op.drop_table("step_waits")
    op.drop_table("approval_requests")
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("payload", db.types.JSONValue, nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("expires_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'expired')",
            name=op.f("ck_approval_requests_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_approval_requests_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_approval_requests_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
    )
    op.create_index(op.f("ix_approval_requests_run_id"), "approval_requests", ["run_id"])
    op.create_index(
        op.f("ix_approval_requests_status_expires_at"),
        "approval_requests",
        ["status", "expires_at"],
    )
    op.create_index(op.f("ix_approval_requests_step_id"), "approval_requests", ["step_id"])
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("monthly_limit_usd")
        batch.drop_column("daily_limit_usd")
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_constraint(op.f("ck_workflow_steps_wait_resumes_non_negative"), type_="check")
        batch.drop_column("approve")
        batch.drop_column("wait_resumes")
    # Rows in the new states cannot be kept under the old constraints.
    op.execute("UPDATE workflow_steps SET status = 'cancelled' WHERE status = 'waiting'")
    op.execute("UPDATE workflow_runs SET status = 'cancelled' WHERE status = 'paused'")
    _swap_check("workflow_steps", "ck_workflow_steps_status_valid", STEP_BEFORE)
    _swap_check("workflow_runs", "ck_workflow_runs_status_valid", RUN_BEFORE)
