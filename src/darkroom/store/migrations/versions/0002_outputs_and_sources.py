"""output format and edit sources on projects

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("output_format", sa.String(length=8), nullable=False, server_default="png")
        )
        batch_op.add_column(sa.Column("output_quality", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("source_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("has_mask", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("has_mask")
        batch_op.drop_column("source_count")
        batch_op.drop_column("output_quality")
        batch_op.drop_column("output_format")
