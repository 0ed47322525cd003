"""marketplace events: the outbox of signed events to the marketplace's own app

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27

- marketplace_events: one row per state change the marketplace must hear of, written in
  the change's own transaction, delivered at least once by the deliver_event job.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketplace_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'dead')",
            name=op.f("ck_marketplace_events_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_events")),
        sa.UniqueConstraint("public_id", name=op.f("uq_marketplace_events_public_id")),
    )
    op.create_index(
        op.f("ix_marketplace_events_status"), "marketplace_events", ["status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_marketplace_events_status"), table_name="marketplace_events")
    op.drop_table("marketplace_events")
