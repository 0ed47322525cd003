"""risk rules: the verdict on each payment, reviews of payments and payouts, identity signals

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27

- payments.risk_level / risk_reasons / risk_enforced: what the risk rules (risk/rules.py)
  said of the payment, the rules that fired, and whether RISK_MODE was `enforce` when they
  ran (a payment evaluated in `observe` keeps its verdict but holds nothing).
- risk_reviews: a payment or payout an admin must decide on before its money moves; at most
  one open review per object.
- risk_signals: keyed digests of what ties an account to a person (client IPs at
  registration and login, card fingerprints, payout destinations): two accounts sharing
  one are looked at as one person. Digests, not the values: the rules only compare them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("risk_level", sa.String(16), nullable=True))
    op.add_column(
        "payments",
        sa.Column(
            "risk_reasons",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.add_column(
        "payments",
        sa.Column("risk_enforced", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_check_constraint(
        op.f("ck_payments_risk_level"),
        "payments",
        "risk_level IN ('normal', 'elevated', 'highest')",
    )
    op.create_table(
        "risk_reviews",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("object_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("reasons", postgresql.JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("decided_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
        sa.CheckConstraint(
            "object_type IN ('payment', 'payout')", name=op.f("ck_risk_reviews_object_type")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'approved', 'rejected')", name=op.f("ck_risk_reviews_status")
        ),
        sa.CheckConstraint(
            "risk_level IN ('normal', 'elevated', 'highest')",
            name=op.f("ck_risk_reviews_risk_level"),
        ),
    )
    op.create_index(
        "ix_risk_reviews_object", "risk_reviews", ["object_type", "object_id"], unique=False
    )
    op.create_index(
        "uq_risk_reviews_open_object",
        "risk_reviews",
        ["object_type", "object_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_risk_reviews_status", "risk_reviews", ["status", "id"])
    op.create_table(
        "risk_signals",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "kind IN ('ip', 'card', 'destination')", name=op.f("ck_risk_signals_kind")
        ),
        sa.UniqueConstraint("user_id", "kind", "digest", name=op.f("uq_risk_signals_user_id")),
    )
    op.create_index("ix_risk_signals_kind_digest", "risk_signals", ["kind", "digest"])


def downgrade() -> None:
    op.drop_index("ix_risk_signals_kind_digest", table_name="risk_signals")
    op.drop_table("risk_signals")
    op.drop_index("ix_risk_reviews_status", table_name="risk_reviews")
    op.drop_index("uq_risk_reviews_open_object", table_name="risk_reviews")
    op.drop_index("ix_risk_reviews_object", table_name="risk_reviews")
    op.drop_table("risk_reviews")
    op.drop_constraint(op.f("ck_payments_risk_level"), "payments", type_="check")
    op.drop_column("payments", "risk_enforced")
    op.drop_column("payments", "risk_reasons")
    op.drop_column("payments", "risk_level")
