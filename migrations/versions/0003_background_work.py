"""background work: webhook retry times, payout batches, PayPal reauthorisation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

- webhook_deliveries.next_attempt_at: when a failed delivery is tried again (backoff).
- worker_payouts.batch_key: the provider batch a payout went out in (PayPal's
  sender_batch_id), so a batch whose answer was lost is sent again whole.
- payments.reauthorized_at: the hold guard renewed a PayPal authorisation.
- partial indexes for the hold guard and the resolver of stuck provider calls.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_deliveries",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("worker_payouts", sa.Column("batch_key", sa.String(length=64), nullable=True))
    op.create_index(
        op.f("ix_worker_payouts_batch_key"), "worker_payouts", ["batch_key"], unique=False
    )
    op.add_column(
        "payments", sa.Column("reauthorized_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_payments_authorized_capture_by",
        "payments",
        ["capture_by"],
        unique=False,
        postgresql_where=sa.text("hold_kind = 'authorized' AND status IN ('held', 'disputed')"),
    )
    op.create_index(
        "ix_payments_provider_operation_at",
        "payments",
        ["provider_operation_at"],
        unique=False,
        postgresql_where=sa.text("provider_operation IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_provider_operation_at", table_name="payments")
    op.drop_index("ix_payments_authorized_capture_by", table_name="payments")
    op.drop_column("payments", "reauthorized_at")
    op.drop_index(op.f("ix_worker_payouts_batch_key"), table_name="worker_payouts")
    op.drop_column("worker_payouts", "batch_key")
    op.drop_column("webhook_deliveries", "next_attempt_at")
