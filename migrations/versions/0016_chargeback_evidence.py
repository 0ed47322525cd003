"""chargeback evidence: what was submitted to the provider for a chargeback

Revision ID: 0016
Revises: 0014
Create Date: 2026-11-27

- dispute_evidence: one row per chargeback, marked `submitting` (and committed) before the
  provider call, `submitted` or `failed` after it; the evidence as sent, so a submission
  resumed after a timeout (by the admin, or the sweep after `marked_at` grew stale) sends
  the same under the same key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dispute_evidence",
        sa.Column("id", sa.BigInteger, autoincrement=True, nullable=False),
        sa.Column(
            "dispute_id",
            sa.BigInteger,
            sa.ForeignKey(
                "payment_disputes.id",
                name=op.f("fk_dispute_evidence_dispute_id_payment_disputes"),
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("admin_text", sa.Text, nullable=True),
        sa.Column("evidence", JSONB, nullable=False),
        sa.Column(
            "submitted_by",
            sa.BigInteger,
            sa.ForeignKey("users.id", name=op.f("fk_dispute_evidence_submitted_by_users")),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute_evidence")),
        sa.UniqueConstraint("dispute_id", name=op.f("uq_dispute_evidence_dispute_id")),
        sa.CheckConstraint(
            "status IN ('submitting', 'submitted', 'failed')",
            name=op.f("ck_dispute_evidence_status"),
        ),
        sa.CheckConstraint("attempt > 0", name=op.f("ck_dispute_evidence_attempt_positive")),
    )
    # What the sweep of submissions left in flight looks for.
    op.create_index(
        "ix_dispute_evidence_in_flight",
        "dispute_evidence",
        ["marked_at"],
        postgresql_where=sa.text("status = 'submitting'"),
    )


def downgrade() -> None:
    op.drop_table("dispute_evidence")
