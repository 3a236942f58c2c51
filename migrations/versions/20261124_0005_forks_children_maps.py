"""Forks, child runs and maps: a step's own inputs, the step a fork's step reuses, a map
step and its elements, the parent step of a child run, and the ``child`` wait and the child run it waits for.

A run's parent link becomes ON DELETE SET NULL: a fork or a child keeps its own rows
and outlives the purge of the run it came from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KIND_BEFORE = "kind IN ('approval', 'signal', 'sleep', 'budget')"
KIND_AFTER = "kind IN ('approval', 'signal', 'sleep', 'budget', 'child')"
PARENT_FK = "fk_workflow_runs_parent_run_id_workflow_runs"


def _parent_fk(ondelete: str) -> None:
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_constraint(op.f(PARENT_FK), type_="foreignkey")
        batch.create_foreign_key(
            op.f(PARENT_FK), "workflow_runs", ["parent_run_id"], ["id"], ondelete=ondelete
        )


def upgrade() -> None:
    with op.batch_alter_table("workflow_steps") as batch:
        batch.add_column(sa.Column("inputs", db.types.JSONValue, nullable=True))
        batch.add_column(sa.Column("origin_step_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("map", db.types.JSONValue, nullable=True))
        batch.add_column(sa.Column("map_parent_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("map_index", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_workflow_steps_map_parent_id_workflow_steps"),
            "workflow_steps",
            ["map_parent_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(
            op.f("ix_workflow_steps_map_parent_id_status_map_index"),
            ["map_parent_id", "status", "map_index"],
        )
    _parent_fk("SET NULL")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.add_column(sa.Column("parent_step_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_workflow_runs_parent_step_id_workflow_steps"),
            "workflow_steps",
            ["parent_step_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_workflow_runs_parent_step_id"), ["parent_step_id"])
    with op.batch_alter_table("step_waits") as batch:
        batch.drop_constraint(op.f("ck_step_waits_kind_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_step_waits_kind_valid"), KIND_AFTER)
        batch.add_column(sa.Column("child_run_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_step_waits_child_run_id_workflow_runs"),
            "workflow_runs",
            ["child_run_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_step_waits_child_run_id"), ["child_run_id"])


def downgrade() -> None:
    with op.batch_alter_table("step_waits") as batch:
        batch.drop_index(op.f("ix_step_waits_child_run_id"))
        batch.drop_constraint(op.f("fk_step_waits_child_run_id_workflow_runs"), type_="foreignkey")
        batch.drop_column("child_run_id")
        batch.drop_constraint(op.f("ck_step_waits_kind_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_step_waits_kind_valid"), KIND_BEFORE)
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_index(op.f("ix_workflow_runs_parent_step_id"))
        batch.drop_constraint(
            op.f("fk_workflow_runs_parent_step_id_workflow_steps"), type_="foreignkey"
        )
        batch.drop_column("parent_step_id")
    _parent_fk("CASCADE")
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_index(op.f("ix_workflow_steps_map_parent_id_status_map_index"))
        batch.drop_constraint(
            op.f("fk_workflow_steps_map_parent_id_workflow_steps"), type_="foreignkey"
        )
        for column in ("map_index", "map_parent_id", "map", "origin_step_id", "inputs"):
            batch.drop_column(column)
