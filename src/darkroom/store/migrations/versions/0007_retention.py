"""retention: when a project's images were deleted for their age

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outputs_deleted_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_projects_status_completed_at", ["status", "completed_at"])


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index("ix_projects_status_completed_at")
        batch_op.drop_column("outputs_deleted_at")
