"""awaited projects say whether their answer is still to be written (a complete project whose
waiter died before writing it is refunded)

A flag of its own, false for every row written before (and by nodes of an older version, which
never clear it): only projects that a node of this version is known not to have delivered are
ever refunded once complete.

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-08 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("answer_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("answer_pending")
