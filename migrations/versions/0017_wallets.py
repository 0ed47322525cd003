"""wallets and stablecoin payments: how a payment was paid

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27

- payments.wallet: the card wallet of a Stripe payment (apple_pay, google_pay, link),
  from the charge's `payment_method_details.card.wallet.type` when it is held; NULL for a
  card without a wallet, PayPal and stablecoins, and for every payment made before.
- payments.stablecoin: a Stripe stablecoin payment (`payment_method: "crypto"`), which
  Stripe captures at once (no manual capture): held as captured money.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("wallet", sa.String(16), nullable=True))
    op.create_check_constraint(
        op.f("ck_payments_wallet"),
        "payments",
        "wallet IN ('apple_pay', 'google_pay', 'link')",
    )
    op.add_column(
        "payments",
        sa.Column("stablecoin", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("payments", "stablecoin")
    op.drop_constraint(op.f("ck_payments_wallet"), "payments", type_="check")
    op.drop_column("payments", "wallet")
