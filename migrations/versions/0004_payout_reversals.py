"""payout reversals: money taken back from completed Stripe Connect payouts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

- payout_reversals: a Connect transfer reversed in part or whole, by us (a refund of a
  released payment whose worker was already paid out; `refund_id` set) or at Stripe by
  someone else (`transfer.reversed`; `refund_id` null). A succeeded one has its journal
  entry (provider clearing -> worker available), which ledger invariant 3 accounts for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payout_reversals",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("payout_id", sa.BigInteger(), nullable=False),
        sa.Column("refund_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_reversal_id", sa.String(length=255), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_payout_reversals_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payout_reversals_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["worker_payouts.id"],
            name=op.f("fk_payout_reversals_payout_id_worker_payouts"),
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"],
            ["payment_refunds.id"],
            name=op.f("fk_payout_reversals_refund_id_payment_refunds"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_reversals")),
        sa.UniqueConstraint(
            "provider_reversal_id", name=op.f("uq_payout_reversals_provider_reversal_id")
        ),
    )
    op.create_index(
        op.f("ix_payout_reversals_payout_id"), "payout_reversals", ["payout_id"], unique=False
    )
    op.create_index(
        op.f("ix_payout_reversals_refund_id"), "payout_reversals", ["refund_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_reversals_refund_id"), table_name="payout_reversals")
    op.drop_index(op.f("ix_payout_reversals_payout_id"), table_name="payout_reversals")
    op.drop_table("payout_reversals")
