"""Steps count the attempts released for server faults, which the retry policy does not.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_steps") as batch:
        batch.add_column(
            sa.Column("server_releases", sa.Integer(), server_default="0", nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_workflow_steps_server_releases_non_negative"), "server_releases >= 0"
        )


def downgrade() -> None:
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_constraint(op.f("ck_workflow_steps_server_releases_non_negative"), type_="check")
        batch.drop_column("server_releases")
