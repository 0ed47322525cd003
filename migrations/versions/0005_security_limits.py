"""rate-limit counters, an idempotency cache that keeps no secrets, one worker per Stripe account

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

- rate_limit_counters: attempts per (bucket, fixed window), shared by every process;
  logins per account and per IP, registrations per IP. Rows of ended windows are purged.
- idempotency_records: the response body is stored encrypted (`response_ciphertext`, the
  metadata keys' Fernet) instead of as text; `started_at` (a request in flight longer than
  the timeout is taken over) and `expires_at` (purged after IDEMPOTENCY_TTL_HOURS). The
  records kept so far hold live tokens and decrypted metadata in plain text and hashes
  of passwords without a key: they are deleted.
- users.stripe_account_id: unique where set. An account named by several workers
  (possible until now through PUT /payments/payout-methods) cannot be known to be any of
  theirs: it is cleared from all of them, with its payouts, before the index is built.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("bucket", sa.String(length=100), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name="pk_rate_limit_counters"),
    )
    op.create_index(
        "ix_rate_limit_counters_window_end", "rate_limit_counters", ["window_end"], unique=False
    )

    op.execute("DELETE FROM idempotency_records")
    op.drop_column("idempotency_records", "response_body")
    op.add_column(
        "idempotency_records", sa.Column("response_ciphertext", sa.LargeBinary(), nullable=True)
    )
    op.add_column(
        "idempotency_records",
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "idempotency_records",
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        op.f("ix_idempotency_records_expires_at"),
        "idempotency_records",
        ["expires_at"],
        unique=False,
    )

    op.execute(
        """
        UPDATE users SET stripe_account_id = NULL, stripe_payouts_enabled = false
        WHERE stripe_account_id IN (
            SELECT stripe_account_id FROM users WHERE stripe_account_id IS NOT NULL
            GROUP BY stripe_account_id HAVING count(*) > 1
        )
        """
    )
    op.create_index(
        "uq_users_stripe_account_id",
        "users",
        ["stripe_account_id"],
        unique=True,
        postgresql_where=sa.text("stripe_account_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_users_stripe_account_id", table_name="users")
    op.execute("DELETE FROM idempotency_records")
    op.drop_index(op.f("ix_idempotency_records_expires_at"), table_name="idempotency_records")
    op.drop_column("idempotency_records", "expires_at")
    op.drop_column("idempotency_records", "started_at")
    op.drop_column("idempotency_records", "response_ciphertext")
    op.add_column("idempotency_records", sa.Column("response_body", sa.Text(), nullable=True))
    op.drop_index("ix_rate_limit_counters_window_end", table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
