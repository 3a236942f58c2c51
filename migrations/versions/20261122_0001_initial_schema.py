"""Initial schema: every cairn table, on SQLite and PostgreSQL alike.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 14:43:01.773007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("queues", db.types.JSONValue, nullable=False),
        sa.Column("step_names", db.types.JSONValue, nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("heartbeat_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('initialized', 'running', 'stopped', 'error')",
            name=op.f("ck_workers_status_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_workers_name")),
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workers_status_heartbeat_at"), ["status", "heartbeat_at"], unique=False
        )

    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_projects_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_projects_tenant_id_name")),
    )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_projects_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("inputs", db.types.JSONValue, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("missed_policy", sa.String(length=16), nullable=False),
        sa.Column("catch_up_max", sa.Integer(), nullable=False),
        sa.Column("next_fire_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "missed_policy IN ('skip', 'catch_up')", name=op.f("ck_schedules_missed_policy_valid")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'paused')", name=op.f("ck_schedules_status_valid")
        ),
        sa.CheckConstraint(
            "catch_up_max >= 0", name=op.f("ck_schedules_catch_up_max_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_schedules_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_schedules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_schedules_project_id_name")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schedules_project_id"), ["project_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_schedules_status_next_fire_at"), ["status", "next_fire_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_schedules_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "workflow_definitions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", db.types.JSONValue, nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_workflow_definitions_version_positive")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_workflow_definitions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workflow_definitions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_definitions")),
        sa.UniqueConstraint(
            "project_id",
            "name",
            "checksum",
            name=op.f("uq_workflow_definitions_project_id_name_checksum"),
        ),
        sa.UniqueConstraint(
            "project_id",
            "name",
            "version",
            name=op.f("uq_workflow_definitions_project_id_name_version"),
        ),
    )
    with op.batch_alter_table("workflow_definitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflow_definitions_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_definitions_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("definition_id", sa.Uuid(), nullable=False),
        sa.Column("parent_run_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("inputs", db.types.JSONValue, nullable=False),
        sa.Column("outputs", db.types.JSONValue, nullable=True),
        sa.Column("error", db.types.JSONValue, nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("budget_usd", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("steps_left", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=18, scale=8), nullable=False),
        sa.Column("started_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "steps_left >= 0", name=op.f("ck_workflow_runs_steps_left_non_negative")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_workflow_runs_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["workflow_definitions.id"],
            name=op.f("fk_workflow_runs_definition_id_workflow_definitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_runs_parent_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_workflow_runs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_workflow_runs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_runs")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_workflow_runs_tenant_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_definition_id"), ["definition_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_parent_run_id"), ["parent_run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_status_updated_at"), ["status", "updated_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_workflow_runs_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_workflow_runs_tenant_id_status_created_at"),
            ["tenant_id", "status", "created_at"],
            unique=False,
        )

    op.create_table(
        "workflow_steps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("pending_upstream", sa.Integer(), nullable=False),
        sa.Column("retry", db.types.JSONValue, nullable=False),
        sa.Column("timeout_s", sa.Double(), nullable=True),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("queued_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("output", db.types.JSONValue, nullable=True),
        sa.Column("output_blob_key", sa.String(length=1024), nullable=True),
        sa.Column("output_sha256", sa.String(length=64), nullable=True),
        sa.Column("error", db.types.JSONValue, nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_workflow_steps_status_valid"),
        ),
        sa.CheckConstraint("attempt >= 0", name=op.f("ck_workflow_steps_attempt_non_negative")),
        sa.CheckConstraint(
            "max_attempts >= 1", name=op.f("ck_workflow_steps_max_attempts_positive")
        ),
        sa.CheckConstraint(
            "pending_upstream >= 0", name=op.f("ck_workflow_steps_pending_upstream_non_negative")
        ),
        sa.CheckConstraint(
            "priority BETWEEN 0 AND 9", name=op.f("ck_workflow_steps_priority_range")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_steps_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_steps")),
        sa.UniqueConstraint("run_id", "key", name=op.f("uq_workflow_steps_run_id_key")),
    )
    with op.batch_alter_table("workflow_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_steps_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_workflow_steps_status_dispatched_at"),
            ["status", "dispatched_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_steps_status_lease_expires_at"),
            ["status", "lease_expires_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_workflow_steps_status_next_attempt_at"),
            ["status", "next_attempt_at"],
            unique=False,
        )

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
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approval_requests_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_approval_requests_status_expires_at"),
            ["status", "expires_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_approval_requests_step_id"), ["step_id"], unique=False)

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("deleted_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_artifacts_size_non_negative")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_artifacts_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_artifacts_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint(
            "run_id", "step_id", "name", name=op.f("uq_artifacts_run_id_step_id_name")
        ),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_step_id"), ["step_id"], unique=False)

    op.create_table(
        "branches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("parent_run_id", sa.Uuid(), nullable=False),
        sa.Column("child_run_id", sa.Uuid(), nullable=False),
        sa.Column("from_step_id", sa.Uuid(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_branches_child_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["from_step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_branches_from_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_branches_parent_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branches")),
    )
    with op.batch_alter_table("branches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_branches_child_run_id"), ["child_run_id"], unique=True)
        batch_op.create_index(
            batch_op.f("ix_branches_from_step_id"), ["from_step_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_branches_parent_run_id"), ["parent_run_id"], unique=False
        )

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", db.types.JSONValue, nullable=True),
        sa.Column("blob_key", sa.String(length=1024), nullable=True),
        sa.Column("blob_sha256", sa.String(length=64), nullable=True),
        sa.Column("blob_size", sa.Integer(), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_checkpoints_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_checkpoints_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("step_id", "seq", name=op.f("uq_checkpoints_step_id_seq")),
    )
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkpoints_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_checkpoints_step_id"), ["step_id"], unique=False)

    op.create_table(
        "cost_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("usd", sa.Numeric(precision=18, scale=8), nullable=False),
        sa.Column("meta", db.types.JSONValue, nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0",
            name=op.f("ck_cost_records_tokens_non_negative"),
        ),
        sa.CheckConstraint("usd >= 0", name=op.f("ck_cost_records_usd_non_negative")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_cost_records_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_cost_records_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_records")),
        sa.UniqueConstraint(
            "step_id", "attempt", "seq", name=op.f("uq_cost_records_step_id_attempt_seq")
        ),
    )
    with op.batch_alter_table("cost_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cost_records_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cost_records_step_id"), ["step_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tool_calls", db.types.JSONValue, nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('system', 'user', 'assistant', 'tool')", name=op.f("ck_messages_role_valid")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_messages_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_messages_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "step_id", "attempt", "seq", name=op.f("uq_messages_step_id_attempt_seq")
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_step_id"), ["step_id"], unique=False)

    op.create_table(
        "run_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("data", db.types.JSONValue, nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_run_events_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_run_events_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_events")),
    )
    with op.batch_alter_table("run_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_events_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_run_events_run_id_created_at"), ["run_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_run_events_step_id"), ["step_id"], unique=False)

    op.create_table(
        "step_edges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("upstream_id", sa.Uuid(), nullable=False),
        sa.Column("downstream_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["downstream_id"],
            ["workflow_steps.id"],
            name=op.f("fk_step_edges_downstream_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_step_edges_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upstream_id"],
            ["workflow_steps.id"],
            name=op.f("fk_step_edges_upstream_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_edges")),
        sa.UniqueConstraint(
            "upstream_id", "downstream_id", name=op.f("uq_step_edges_upstream_id_downstream_id")
        ),
    )
    with op.batch_alter_table("step_edges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_step_edges_downstream_id"), ["downstream_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_step_edges_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_step_edges_upstream_id"), ["upstream_id"], unique=False
        )

    op.create_table(
        "workflow_metrics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.Uuid(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_metrics_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_workflow_metrics_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_metrics")),
        sa.UniqueConstraint(
            "step_id", "attempt", "name", name=op.f("uq_workflow_metrics_step_id_attempt_name")
        ),
    )
    with op.batch_alter_table("workflow_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workflow_metrics_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_workflow_metrics_step_id"), ["step_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workflow_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_metrics_step_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_metrics_run_id"))

    op.drop_table("workflow_metrics")
    with op.batch_alter_table("step_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_edges_upstream_id"))
        batch_op.drop_index(batch_op.f("ix_step_edges_run_id"))
        batch_op.drop_index(batch_op.f("ix_step_edges_downstream_id"))

    op.drop_table("step_edges")
    with op.batch_alter_table("run_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_events_step_id"))
        batch_op.drop_index(batch_op.f("ix_run_events_run_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_run_events_run_id"))

    op.drop_table("run_events")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_step_id"))
        batch_op.drop_index(batch_op.f("ix_messages_run_id"))

    op.drop_table("messages")
    with op.batch_alter_table("cost_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cost_records_step_id"))
        batch_op.drop_index(batch_op.f("ix_cost_records_run_id"))

    op.drop_table("cost_records")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkpoints_step_id"))
        batch_op.drop_index(batch_op.f("ix_checkpoints_run_id"))

    op.drop_table("checkpoints")
    with op.batch_alter_table("branches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_branches_parent_run_id"))
        batch_op.drop_index(batch_op.f("ix_branches_from_step_id"))
        batch_op.drop_index(batch_op.f("ix_branches_child_run_id"))

    op.drop_table("branches")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_step_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_run_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approval_requests_step_id"))
        batch_op.drop_index(batch_op.f("ix_approval_requests_status_expires_at"))
        batch_op.drop_index(batch_op.f("ix_approval_requests_run_id"))

    op.drop_table("approval_requests")
    with op.batch_alter_table("workflow_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_steps_status_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_steps_status_lease_expires_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_steps_status_dispatched_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_steps_run_id"))

    op.drop_table("workflow_steps")
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_runs_tenant_id_status_created_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_status_updated_at"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_project_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_parent_run_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_runs_definition_id"))

    op.drop_table("workflow_runs")
    with op.batch_alter_table("workflow_definitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_definitions_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_workflow_definitions_project_id"))

    op.drop_table("workflow_definitions")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedules_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_schedules_status_next_fire_at"))
        batch_op.drop_index(batch_op.f("ix_schedules_project_id"))

    op.drop_table("schedules")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_projects_tenant_id"))

    op.drop_table("projects")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workers_status_heartbeat_at"))

    op.drop_table("workers")
    op.drop_table("tenants")
