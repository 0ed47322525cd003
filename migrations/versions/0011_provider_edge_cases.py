"""provider edge cases: the installation's provider id prefix, held payouts, refund kinds

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27

- installation: one row, the prefix of every id this installation sends a provider
  (PROVIDER_ID_PREFIX overrides it). Created here with a random value, under the start-up
  migration's lock, so every process of the installation reads the same one.
- worker_payouts.held_reason: a payout parked for an admin (a transfer found under its key
  that is not it, a worker balance below zero, a PayPal batch that cannot be found):
  never sent or settled while set.
- payment_refunds.kind: refund, reversal or chargeback, read by code instead of the
  reason's words; existing rows classified once from those words.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("provider_id_prefix", sa.String(24), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_installation_one_row")),
        sa.CheckConstraint(
            "provider_id_prefix ~ '^[A-Za-z0-9]{1,24}$'", name=op.f("ck_installation_prefix")
        ),
    )
    op.execute(
        "INSERT INTO installation (id, provider_id_prefix) "
        "VALUES (1, 'hw' || substr(md5(random()::text || clock_timestamp()::text), 1, 10))"
    )
    op.add_column("worker_payouts", sa.Column("held_reason", sa.Text, nullable=True))
    op.add_column(
        "payment_refunds",
        sa.Column("kind", sa.String(16), nullable=False, server_default="refund"),
    )
    op.execute(
        "UPDATE payment_refunds SET kind = 'reversal' WHERE reason LIKE 'Reversed by PayPal%'"
    )
    op.execute(
        "UPDATE payment_refunds SET kind = 'chargeback' WHERE reason LIKE 'Chargeback lost%'"
    )
    op.create_check_constraint(
        op.f("ck_payment_refunds_kind"),
        "payment_refunds",
        "kind IN ('refund', 'reversal', 'chargeback')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_payment_refunds_kind"), "payment_refunds", type_="check")
    op.drop_column("payment_refunds", "kind")
    op.drop_column("worker_payouts", "held_reason")
    op.drop_table("installation")
