"""a project's status note is its status_reason, as the API has always called it

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.alter_column("status_note", new_column_name="status_reason")


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.alter_column("status_reason", new_column_name="status_note")
