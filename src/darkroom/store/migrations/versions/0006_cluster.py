"""many processes: nodes with heartbeats, render leases, awaited projects, fair turns, shared
rate-limit buckets, webhook delivery lease owners

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("models", sa.Text(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    op.create_index(op.f("ix_nodes_heartbeat_at"), "nodes", ["heartbeat_at"])
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("awaited_by", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_projects_status_lease_until", ["status", "lease_until"])
    op.create_table(
        "queue_turns",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("last_claim_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_queue_turns")),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_buckets")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("lease_owner")
    op.drop_table("rate_buckets")
    op.drop_table("queue_turns")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index("ix_projects_status_lease_until")
        batch_op.drop_column("awaited_by")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
    op.drop_index(op.f("ix_nodes_heartbeat_at"), table_name="nodes")
    op.drop_table("nodes")
