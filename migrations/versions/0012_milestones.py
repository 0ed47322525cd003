"""milestones: a booking's price in parts released one by one

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27

- booking_milestones: the parts of a booking's price (2 to 20), each released to the
  worker on its own; its fee share is derived from the payment's fee, never stored.
- payments.released_amount / released_fee: what left escrow to the worker and the fee
  revenue. Existing released payments get what their release moved: the amount less the
  refunds made before it (and the fee less those refunds' fee parts).
- payment_refunds.milestone_id: the milestone a refund was asked of.
- bookings.milestone_count: how many it has (0: none), so that a booking without any
  never costs a look-up.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "booking_milestones",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("booking_id", sa.BigInteger, sa.ForeignKey("bookings.id"), nullable=False),
        sa.Column("position", sa.SmallInteger, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger, nullable=False),
        sa.Column("released_amount", sa.BigInteger, nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'released', 'refunded')",
            name=op.f("ck_booking_milestones_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_booking_milestones_amount_positive")),
        sa.CheckConstraint(
            "refunded_amount BETWEEN 0 AND amount",
            name=op.f("ck_booking_milestones_refund_within_amount"),
        ),
        sa.CheckConstraint(
            "released_amount BETWEEN 0 AND amount",
            name=op.f("ck_booking_milestones_release_within_amount"),
        ),
        sa.UniqueConstraint(
            "booking_id", "position", name=op.f("uq_booking_milestones_booking_id")
        ),
    )
    op.create_index(op.f("ix_booking_milestones_booking_id"), "booking_milestones", ["booking_id"])
    op.add_column(
        "bookings",
        sa.Column("milestone_count", sa.SmallInteger, nullable=False, server_default="0"),
    )
    op.add_column(
        "payments",
        sa.Column("released_amount", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column(
        "payments", sa.Column("released_fee", sa.BigInteger, nullable=False, server_default="0")
    )
    op.execute(
        """
        UPDATE payments p SET
            released_amount = p.amount - coalesce(r.amount, 0),
            released_fee = p.platform_fee - coalesce(r.fee_part, 0)
        FROM payments q LEFT JOIN LATERAL (
            SELECT sum(amount) AS amount, sum(fee_part) AS fee_part FROM payment_refunds
            WHERE payment_id = q.id AND before_release AND status = 'succeeded'
        ) r ON true
        WHERE q.id = p.id AND p.released_at IS NOT NULL
        """
    )
    op.create_check_constraint(
        op.f("ck_payments_release_within_amount"),
        "payments",
        "released_amount BETWEEN 0 AND amount",
    )
    op.create_check_constraint(
        op.f("ck_payments_release_fee_within_fee"),
        "payments",
        "released_fee BETWEEN 0 AND platform_fee",
    )
    op.add_column(
        "payment_refunds",
        sa.Column(
            "milestone_id",
            sa.BigInteger,
            sa.ForeignKey(
                "booking_milestones.id",
                name=op.f("fk_payment_refunds_milestone_id_booking_milestones"),
            ),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("payment_refunds", "milestone_id")
    op.drop_constraint(op.f("ck_payments_release_fee_within_fee"), "payments", type_="check")
    op.drop_constraint(op.f("ck_payments_release_within_amount"), "payments", type_="check")
    op.drop_column("payments", "released_fee")
    op.drop_column("payments", "released_amount")
    op.drop_column("bookings", "milestone_count")
    op.drop_index(op.f("ix_booking_milestones_booking_id"), "booking_milestones")
    op.drop_table("booking_milestones")
