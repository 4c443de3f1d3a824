"""data formats: what stored data means where a release changed it, so that nodes of the release
before keep reading it during a rolling upgrade until the operator moves it on

Revision ID: 0011
Revises: 0013
Create Date: 2026-12-09 10:00:00

One row now: ``webhook_secrets``. "clear" while the database may hold webhook signing secrets in
clear for nodes of a release before their encryption (which read and sign with the column as it
is); "sealed" once ``darkroom secrets seal`` has encrypted them all, and on a fresh database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    formats = op.create_table(
        "data_formats",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_formats")),
    )
    conn = op.get_bind()
    # Secrets in clear, or a database that nodes have run on without any endpoint yet (an older
    # node may still create one in clear): older nodes may be running, so new nodes keep the
    # secrets readable to them. A fresh database, or one whose secrets are all encrypted
    # already, is sealed.
    in_clear = conn.execute(
        sa.text("SELECT 1 FROM webhook_endpoints WHERE secret NOT LIKE 'v1:%'")
    ).first()
    endpoints = conn.execute(sa.text("SELECT 1 FROM webhook_endpoints")).first()
    nodes_ran = conn.execute(sa.text("SELECT 1 FROM nodes")).first()
    clear = in_clear is not None or (endpoints is None and nodes_ran is not None)
    op.execute(
        formats.insert().values(
            name="webhook_secrets",
            format="clear" if clear else "sealed",
            changed_at=sa.func.current_timestamp(),
        )
    )


def downgrade() -> None:
    op.drop_table("data_formats")
