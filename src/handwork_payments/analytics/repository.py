"""Aggregates for the summaries. Balances come from the ledger's balance rows (one row
read, whatever the ledger's size); the rest are indexed sums over one user's own rows."""

from __future__ import annotations

from sqlalchemy import BigInteger, Label, Select, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit import money
from handwork_payments.ledger.service import available_code, reserved_code
from handwork_payments.models import (
    AccountKind,
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

IN_ESCROW = (PaymentStatus.HELD, PaymentStatus.DISPUTED)


ClientTotals = dict[str, int]
WorkerTotals = dict[str, int]


async def client_totals(session: AsyncSession, client_id: int, currency: str) -> ClientTotals:
    return (await client_totals_by_currency(session, client_id, currency)).get(
        currency, {"count": 0, "held": 0, "released": 0, "refunded": 0}
    )


async def client_totals_by_currency(
    session: AsyncSession, client_id: int, currency: str | None = None
) -> dict[str, ClientTotals]:
    """The client's summary figures per currency they paid in (or in `currency`), in one
    query."""
    net = Payment.amount - Payment.refunded_amount
    query = (
        select(
            Payment.currency,
            func.count(Payment.id),
            func.coalesce(func.sum(case((Payment.status.in_(IN_ESCROW), net), else_=0)), 0),
            func.coalesce(
                func.sum(case((Payment.status == PaymentStatus.RELEASED, net), else_=0)), 0
            ),
            func.coalesce(func.sum(Payment.refunded_amount), 0),
        )
        .join(Booking, Booking.id == Payment.booking_id)
        .where(Booking.client_id == client_id, Payment.held_at.is_not(None))
        .group_by(Payment.currency)
        .order_by(Payment.currency)
    )
    if currency is not None:
        query = query.where(Payment.currency == currency)
    return {
        code: {"count": int(n), "held": int(h), "released": int(r), "refunded": int(f)}
        for code, n, h, r, f in (await session.execute(query)).all()
    }


async def worker_totals(session: AsyncSession, worker_id: int, currency: str) -> WorkerTotals:
    return (await worker_totals_by_currency(session, worker_id, currency)).get(
        currency, dict.fromkeys(("available", "reserved", "pending", "paid_out"), 0)
    )


async def worker_totals_by_currency(
    session: AsyncSession, worker_id: int, currency: str | None = None
) -> dict[str, WorkerTotals]:
    """Every figure of the earnings summary, per currency the worker has (or in
    `currency`), in one round trip: the balance rows found by their codes (the unique
    index; one pair per currency kit.money knows when none is given), and indexed sums
    over the worker's payments and payouts, added up per currency."""
    codes = [currency] if currency is not None else list(money.CURRENCY_EXPONENTS)
    is_available = LedgerAccount.kind == AccountKind.WORKER_AVAILABLE
    accounts = select(
        LedgerAccount.currency.label("currency"),
        case((is_available, LedgerAccount.balance), else_=0).label("available"),
        case((is_available, 0), else_=LedgerAccount.balance).label("reserved"),
        *_zeros("pending", "paid", "reversed"),
    ).where(
        LedgerAccount.code.in_(
            [available_code(worker_id, c) for c in codes]
            + [reserved_code(worker_id, c) for c in codes]
        )
    )
    share = Payment.worker_amount - (Payment.refunded_amount - Payment.refunded_fee)
    pending = (
        select(
            Payment.currency,
            *_zeros("available", "reserved"),
            func.sum(share).label("pending"),
            *_zeros("paid", "reversed"),
        )
        .join(Booking, Booking.id == Payment.booking_id)
        .where(
            Booking.worker_id == worker_id,
            Payment.currency.in_(codes),
            Payment.status.in_(IN_ESCROW),
        )
        .group_by(Payment.currency)
    )
    completed = (
        WorkerPayout.worker_id == worker_id,
        WorkerPayout.currency.in_(codes),
        WorkerPayout.status == PayoutStatus.COMPLETED,
    )
    paid = (
        select(
            WorkerPayout.currency,
            *_zeros("available", "reserved", "pending"),
            func.sum(WorkerPayout.amount).label("paid"),
            *_zeros("reversed"),
        )
        .where(*completed)
        .group_by(WorkerPayout.currency)
    )
    # Money reversed from completed Stripe payouts (to cover refunds, or at Stripe) is back
    # with the platform: no longer paid out to the worker.
    reversed_ = (
        select(
            WorkerPayout.currency,
            *_zeros("available", "reserved", "pending", "paid"),
            func.sum(PayoutReversal.amount).label("reversed"),
        )
        .join(WorkerPayout, WorkerPayout.id == PayoutReversal.payout_id)
        .where(*completed, PayoutReversal.status == ReversalStatus.SUCCEEDED)
        .group_by(WorkerPayout.currency)
    )
    parts = union_all(accounts, pending, paid, reversed_).subquery()
    figures = ("available", "reserved", "pending", "paid", "reversed")
    query = (
        select(parts.c.currency, *(func.sum(parts.c[name]) for name in figures))
        .group_by(parts.c.currency)
        .order_by(parts.c.currency)
    )
    found: dict[str, WorkerTotals] = {}
    for code, available, reserved, pending_sum, paid_sum, reversed_sum in (
        await session.execute(query)
    ).all():
        found[code] = {
            "available": int(available),
            "reserved": int(reserved),
            "pending": int(pending_sum),
            "paid_out": int(paid_sum) - int(reversed_sum),
        }
    return found


def _zeros(*names: str) -> list[Label[int]]:
    return [literal(0, BigInteger).label(name) for name in names]


def transactions(user: User) -> Select[PaymentTransaction]:
    """One's own history; an admin's is the platform's (fee rows)."""
    owner = None if user.role == Role.ADMIN else user.id
    condition = (
        PaymentTransaction.user_id.is_(None)
        if owner is None
        else PaymentTransaction.user_id == owner
    )
    return select(PaymentTransaction).where(condition).order_by(PaymentTransaction.id.desc())
