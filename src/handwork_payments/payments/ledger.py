"""The journal entries of a payment's life: hold, release, refund. Each is called inside
the transaction that changes the payment's state, under the payment's row lock."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.ledger import service as ledger
from handwork_payments.ledger.service import History
from handwork_payments.models import (
    Booking,
    LedgerAccount,
    Milestone,
    Payment,
    PaymentRefund,
    TransactionType,
)

T = TransactionType


async def post_hold(session: AsyncSession, payment: Payment, booking: Booking) -> None:
    """The payer's money enters escrow."""
    clearing = await ledger.clearing(session, payment.payment_method, payment.currency)
    escrow = await ledger.escrow(session, payment.id, payment.currency)
    await ledger.post(
        session,
        key=f"payment-{payment.id}-hold",
        kind="payment_hold",
        description=f"Payment #{payment.id} for booking #{booking.id} held in escrow",
        lines=[(clearing, -payment.amount), (escrow, payment.amount)],
        history=[
            History(
                booking.client_id, T.PAYMENT, -payment.amount, f"Paid for booking #{booking.id}"
            )
        ],
        payment_id=payment.id,
    )


async def post_release(session: AsyncSession, payment: Payment, booking: Booking) -> int:
    """What is left in escrow goes to the worker's available balance and the platform fee,
    each reduced by its share of the refunds made before release and of the milestones
    released already; the worker's share."""
    held = payment.amount - payment.refunded_amount - payment.released_amount
    fee = payment.platform_fee - payment.refunded_fee - payment.released_fee
    return await _post_earning(
        session,
        payment,
        booking,
        held,
        fee,
        key=f"payment-{payment.id}-release",
        what=f"booking #{booking.id}",
    )


async def post_milestone_release(
    session: AsyncSession, payment: Payment, booking: Booking, milestone: Milestone, fee: int
) -> int:
    """One milestone's part of escrow (`released_amount`, less its refunds) to the worker
    and its fee share to the revenue; the worker's share."""
    return await _post_earning(
        session,
        payment,
        booking,
        milestone.released_amount,
        fee,
        key=f"payment-{payment.id}-milestone-{milestone.id}-release",
        what=f"milestone #{milestone.id} of booking #{booking.id}",
        detail=f" (milestone #{milestone.id})",
    )


async def _post_earning(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    held: int,
    fee: int,
    *,
    key: str,
    what: str,
    detail: str = "",
) -> int:
    """Release `held` of escrow: `fee` of it to the revenue, the rest to the worker; the
    worker's share."""
    # Before the entry: the payment's row is written once, by the flush the entry causes.
    payment.released_amount += held
    payment.released_fee += fee
    share = held - fee
    escrow = await ledger.escrow(session, payment.id, payment.currency)
    available = await ledger.available(session, booking.worker_id, payment.currency)
    revenue = await ledger.fee_revenue(session, payment.currency)
    await ledger.post(
        session,
        key=key,
        kind="payment_release",
        description=f"Payment #{payment.id} released to worker #{booking.worker_id}{detail}",
        lines=[(escrow, -held), (available, share), (revenue, fee)],
        history=[
            History(booking.worker_id, T.EARNING, share, f"Earned from {what}"),
            History(None, T.FEE, fee, f"Platform fee of payment #{payment.id}"),
        ],
        payment_id=payment.id,
    )
    return share


async def _fee_back_lines(
    session: AsyncSession, payment: Payment, fee_back: int
) -> list[tuple[LedgerAccount, int]]:
    if not fee_back:
        return []
    fees = await ledger.provider_fees(session, payment.payment_method, payment.currency)
    return [(fees, fee_back)]


async def post_refund(
    session: AsyncSession, payment: Payment, booking: Booking, refund: PaymentRefund
) -> None:
    """Money back to the payer: out of escrow before release; after it, out of the
    worker's available balance and the fee revenue pro rata (the worker's balance may go
    negative when the money was already paid out: a debt later earnings pay off)."""
    clearing = await ledger.clearing(session, payment.payment_method, payment.currency)
    # What the provider gave back of its capture fee comes back to the clearing account.
    fee_back = refund.provider_fee_refunded
    client_row = History(
        booking.client_id, T.REFUND, refund.amount, f"Refund #{refund.id} of payment #{payment.id}"
    )
    if refund.before_release:
        escrow = await ledger.escrow(session, payment.id, payment.currency)
        lines = [(escrow, -refund.amount), (clearing, refund.amount - fee_back)]
        history = [client_row]
    else:
        worker_part = refund.amount - refund.fee_part
        available = await ledger.available(session, booking.worker_id, payment.currency)
        revenue = await ledger.fee_revenue(session, payment.currency)
        lines = [
            (available, -worker_part),
            (revenue, -refund.fee_part),
            (clearing, refund.amount - fee_back),
        ]
        history = [
            client_row,
            History(
                booking.worker_id,
                T.REFUND,
                -worker_part,
                f"Refund #{refund.id} of booking #{booking.id} taken back",
            ),
            History(None, T.FEE, -refund.fee_part, f"Fee returned by refund #{refund.id}"),
        ]
    await ledger.post(
        session,
        key=f"payment-{payment.id}-refund-{refund.id}",
        kind="payment_refund",
        description=f"Refund #{refund.id} of payment #{payment.id}: {refund.reason}",
        lines=[*lines, *await _fee_back_lines(session, payment, fee_back)],
        history=history,
        payment_id=payment.id,
    )
