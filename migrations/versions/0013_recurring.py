"""recurring bookings: schedules and their runs

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27

- recurring_schedules: a client's schedule of bookings with one worker, the provider's
  setup (SetupIntent) and the payment method it saved for off-session charges;
- recurring_runs: one row per occurrence (unique per schedule and number, where two
  workers racing the same occurrence meet), its attempts and its booking and payment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column[sa.DateTime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "recurring_schedules",
        sa.Column("id", sa.BigInteger, autoincrement=True, nullable=False),
        sa.Column(
            "client_id",
            sa.BigInteger,
            sa.ForeignKey("users.id", name=op.f("fk_recurring_schedules_client_id_users")),
            nullable=False,
        ),
        sa.Column(
            "worker_id",
            sa.BigInteger,
            sa.ForeignKey("users.id", name=op.f("fk_recurring_schedules_worker_id_users")),
            nullable=False,
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("interval", sa.String(16), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.Integer),
        sa.Column("payment_method", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("setup_id", sa.String(255)),
        sa.Column("customer_id", sa.String(255)),
        sa.Column("saved_method", sa.String(255)),
        sa.Column("next_number", sa.Integer, nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True)),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recurring_schedules")),
        sa.UniqueConstraint("setup_id", name=op.f("uq_recurring_schedules_setup_id")),
        sa.CheckConstraint(
            "status IN ('pending_setup', 'active', 'paused', 'cancelled', 'finished')",
            name=op.f("ck_recurring_schedules_status"),
        ),
        sa.CheckConstraint(
            "interval IN ('weekly', 'biweekly', 'monthly')",
            name=op.f("ck_recurring_schedules_interval"),
        ),
        sa.CheckConstraint(
            "payment_method IN ('stripe', 'paypal')",
            name=op.f("ck_recurring_schedules_payment_method"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_recurring_schedules_amount_positive")),
        sa.CheckConstraint(
            "occurrences IS NULL OR occurrences > 0",
            name=op.f("ck_recurring_schedules_occurrences_positive"),
        ),
        sa.CheckConstraint(
            "client_id <> worker_id", name=op.f("ck_recurring_schedules_distinct_parties")
        ),
    )
    for column in ("client_id", "worker_id", "status", "next_run_at"):
        op.create_index(op.f(f"ix_recurring_schedules_{column}"), "recurring_schedules", [column])
    op.create_table(
        "recurring_runs",
        sa.Column("id", sa.BigInteger, autoincrement=True, nullable=False),
        sa.Column(
            "schedule_id",
            sa.BigInteger,
            sa.ForeignKey(
                "recurring_schedules.id",
                name=op.f("fk_recurring_runs_schedule_id_recurring_schedules"),
            ),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column(
            "booking_id",
            sa.BigInteger,
            sa.ForeignKey("bookings.id", name=op.f("fk_recurring_runs_booking_id_bookings")),
        ),
        sa.Column(
            "payment_id",
            sa.BigInteger,
            sa.ForeignKey("payments.id", name=op.f("fk_recurring_runs_payment_id_payments")),
        ),
        sa.Column("charging_since", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        _created_at(),
        sa.UniqueConstraint(
            "schedule_id", "number", name=op.f("uq_recurring_runs_schedule_number")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recurring_runs")),
        sa.CheckConstraint(
            "status IN ('due', 'retrying', 'held', 'failed')",
            name=op.f("ck_recurring_runs_status"),
        ),
        sa.CheckConstraint("number > 0", name=op.f("ck_recurring_runs_number_positive")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_recurring_runs_attempts_non_negative")),
    )
    op.create_index(op.f("ix_recurring_runs_schedule_id"), "recurring_runs", ["schedule_id"])


def downgrade() -> None:
    op.drop_table("recurring_runs")
    op.drop_table("recurring_schedules")
