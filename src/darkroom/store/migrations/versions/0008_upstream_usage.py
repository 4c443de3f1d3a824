"""upstream usage: what a vendor counted for a project rendered through its API

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("upstream_input_tokens", "upstream_output_tokens", "upstream_images")


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
