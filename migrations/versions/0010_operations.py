"""operations: alerts that reach a person, the analytics' indexes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27

- alerts: status (open/acknowledged), count, last_seen_at, acknowledgement and delivery
  columns; one open alert per (kind, object_type, object_id) (a partial unique index the
  upsert in audit/alerts.py relies on).
- Indexes for GET /admin/analytics and /metrics: every figure is a range scan on a time
  column (held_at, created_at, completed_at, resolved_at, requested_at), so a 30-day window
  reads that window's rows, not the whole table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (index, table, columns, where)
INDEXES = [
    ("ix_payments_held_at", "payments", ["held_at"], "held_at IS NOT NULL"),
    ("ix_payments_created_at", "payments", ["created_at"], None),
    ("ix_journal_entries_created_at", "journal_entries", ["created_at"], None),
    ("ix_payment_refunds_completed_at", "payment_refunds", ["completed_at"], None),
    ("ix_payment_disputes_created_at", "payment_disputes", ["created_at"], None),
    ("ix_payment_disputes_resolved_at", "payment_disputes", ["resolved_at"], None),
    ("ix_worker_payouts_requested_at", "worker_payouts", ["requested_at"], None),
    ("ix_worker_payouts_completed_at", "worker_payouts", ["completed_at"], None),
]


def upgrade() -> None:
    op.add_column(
        "alerts", sa.Column("status", sa.String(16), nullable=False, server_default="open")
    )
    op.add_column("alerts", sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
    op.add_column(
        "alerts",
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.execute("UPDATE alerts SET last_seen_at = created_at")
    op.add_column("alerts", sa.Column("acknowledged_at", sa.DateTime(timezone=True)))
    op.add_column(
        "alerts",
        sa.Column(
            "acknowledged_by",
            sa.BigInteger(),
            sa.ForeignKey("users.id", name="fk_alerts_acknowledged_by_users"),
        ),
    )
    op.add_column("alerts", sa.Column("webhook_sent_at", sa.DateTime(timezone=True)))
    op.add_column("alerts", sa.Column("email_sent_at", sa.DateTime(timezone=True)))
    op.add_column(
        "alerts",
        sa.Column("delivery_attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("alerts", sa.Column("delivery_error", sa.Text()))
    op.create_check_constraint(
        op.f("ck_alerts_status"), "alerts", "status IN ('open', 'acknowledged')"
    )
    # Alerts recorded before this migration were never de-duplicated: they count as seen.
    op.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_at = now()")
    op.create_index(
        "uq_alerts_open_object",
        "alerts",
        ["kind", "object_type", "object_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    for name, table, columns, where in INDEXES:
        op.create_index(
            name,
            table,
            columns,
            postgresql_where=sa.text(where) if where else None,
        )


def downgrade() -> None:
    for name, table, _, _ in INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_index("uq_alerts_open_object", table_name="alerts")
    op.drop_constraint(op.f("ck_alerts_status"), "alerts", type_="check")
    for column in (
        "delivery_error",
        "delivery_attempts",
        "email_sent_at",
        "webhook_sent_at",
        "acknowledged_by",
        "acknowledged_at",
        "last_seen_at",
        "count",
        "status",
    ):
        op.drop_column("alerts", column)
