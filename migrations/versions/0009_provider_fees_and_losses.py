"""provider fees and platform losses: the provider's fee on each capture and refund, the
dispute fee, worker write-offs, and the two expense account kinds

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27

- payments.provider_fee: the processing fee the provider reported for the capture (null
  until captured); payment_refunds.provider_fee_refunded: what it gave back of it;
  payment_disputes.provider_fee: the dispute fee booked to platform losses. `ledger verify`
  compares the provider_fees accounts with these.
- worker_write_offs: a worker's debt an admin wrote off to platform losses.
- ledger_accounts.kind: provider_fees, platform_losses.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_KINDS = (
    "'provider_clearing', 'escrow', 'worker_available', 'worker_payout_reserved', "
    "'platform_fee_revenue'"
)
NEW_KINDS = OLD_KINDS + ", 'provider_fees', 'platform_losses'"


def upgrade() -> None:
    op.add_column("payments", sa.Column("provider_fee", sa.BigInteger(), nullable=True))
    for table in ("payment_refunds", "payment_disputes"):
        column = "provider_fee_refunded" if table == "payment_refunds" else "provider_fee"
        op.add_column(table, sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"))
        op.alter_column(table, column, server_default=None)
    op.drop_constraint(op.f("ck_ledger_accounts_kind"), "ledger_accounts", type_="check")
    op.create_check_constraint(
        op.f("ck_ledger_accounts_kind"), "ledger_accounts", f"kind IN ({NEW_KINDS})"
    )
    op.create_table(
        "worker_write_offs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("admin_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_worker_write_offs_amount_positive")),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["users.id"], name=op.f("fk_worker_write_offs_worker_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["users.id"], name=op.f("fk_worker_write_offs_admin_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_write_offs")),
    )
    op.create_index(
        op.f("ix_worker_write_offs_worker_id"), "worker_write_offs", ["worker_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_write_offs_worker_id"), table_name="worker_write_offs")
    op.drop_table("worker_write_offs")
    op.drop_constraint(op.f("ck_ledger_accounts_kind"), "ledger_accounts", type_="check")
    op.create_check_constraint(
        op.f("ck_ledger_accounts_kind"), "ledger_accounts", f"kind IN ({OLD_KINDS})"
    )
    op.drop_column("payment_disputes", "provider_fee")
    op.drop_column("payment_refunds", "provider_fee_refunded")
    op.drop_column("payments", "provider_fee")
