"""Aggregates for the summaries. Balances come from the ledger's balance rows (one row
read, whatever the ledger's size); the rest are indexed sums over one user's own rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Select, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.ledger.service import available_code, reserved_code
from handwork_payments.models import (
    Booking,
    LedgerAccount,
    Payment,
    PaymentStatus,
    PaymentTransaction,
    PayoutReversal,
    PayoutStatus,
    ReversalStatus,
    Role,
    User,
    WorkerPayout,
)
from handwork_payments.payouts import delay

IN_ESCROW = (PaymentStatus.HELD, PaymentStatus.DISPUTED)


async def client_totals(session: AsyncSession, client_id: int, currency: str) -> dict[str, int]:
    net = Payment.amount - Payment.refunded_amount
    # Milestones released while the rest is held count as released, not held.
    in_escrow = net - Payment.released_amount
    released_now = (
        (Payment.status == PaymentStatus.RELEASED, net),
        (Payment.status.in_(IN_ESCROW), Payment.released_amount),
    )
    row = (
        await session.execute(
            select(
                func.count(Payment.id),
                func.coalesce(
                    func.sum(case((Payment.status.in_(IN_ESCROW), in_escrow), else_=0)), 0
                ),
                func.coalesce(func.sum(case(*released_now, else_=0)), 0),
                func.coalesce(func.sum(Payment.refunded_amount), 0),
            )
            .join(Booking, Booking.id == Payment.booking_id)
            .where(
                Booking.client_id == client_id,
                Payment.currency == currency,
                Payment.held_at.is_not(None),
            )
        )
    ).one()
    count, held, released, refunded = (int(v) for v in row)
    return {"count": count, "held": held, "released": released, "refunded": refunded}


async def worker_totals(
    session: AsyncSession, worker_id: int, currency: str, delay_since: datetime | None = None
) -> dict[str, int]:
    """Every figure of the earnings summary in one round trip (five indexed reads, six
    with a payout delay: released after `delay_since` is not withdrawable yet)."""
    share = (
        Payment.worker_amount
        - (Payment.refunded_amount - Payment.refunded_fee)
        - (Payment.released_amount - Payment.released_fee)  # milestones released already
    )
    pending = (
        select(func.coalesce(func.sum(share), 0))
        .join(Booking, Booking.id == Payment.booking_id)
        .where(
            Booking.worker_id == worker_id,
            Payment.currency == currency,
            Payment.status.in_(IN_ESCROW),
        )
        .scalar_subquery()
    )
    paid_out = (
        select(func.coalesce(func.sum(WorkerPayout.amount), 0))
        .where(
            WorkerPayout.worker_id == worker_id,
            WorkerPayout.currency == currency,
            WorkerPayout.status == PayoutStatus.COMPLETED,
        )
        .scalar_subquery()
    )
    # Money reversed from completed Stripe payouts (to cover refunds, or at Stripe) is back
    # with the platform: no longer paid out to the worker.
    reversed_amount = (
        select(func.coalesce(func.sum(PayoutReversal.amount), 0))
        .join(WorkerPayout, WorkerPayout.id == PayoutReversal.payout_id)
        .where(
            WorkerPayout.worker_id == worker_id,
            WorkerPayout.currency == currency,
            WorkerPayout.status == PayoutStatus.COMPLETED,
            PayoutReversal.status == ReversalStatus.SUCCEEDED,
        )
        .scalar_subquery()
    )

    code = available_code(worker_id, currency)

    def balance(code: str) -> ColumnElement[int]:
        row = select(LedgerAccount.balance).where(LedgerAccount.code == code).scalar_subquery()
        return func.coalesce(row, 0)

    row = (
        await session.execute(
            select(
                balance(code),
                balance(reserved_code(worker_id, currency)),
                pending,
                paid_out,
                reversed_amount,
                literal(0) if delay_since is None else delay.in_delay(code, delay_since),
            )
        )
    ).one()
    balance_now, reserved, pending_sum, paid, reversed_sum, delayed = (int(v) for v in row)
    available, soon = delay.split(balance_now, delayed)
    return {
        "available": available,
        "available_soon": soon,
        "reserved": reserved,
        "pending": pending_sum,
        "paid_out": paid - reversed_sum,
    }


def transactions(user: User) -> Select[PaymentTransaction]:
    """One's own history; an admin's is the platform's (fee rows)."""
    owner = None if user.role == Role.ADMIN else user.id
    condition = (
        PaymentTransaction.user_id.is_(None)
        if owner is None
        else PaymentTransaction.user_id == owner
    )
    return select(PaymentTransaction).where(condition).order_by(PaymentTransaction.id.desc())
