"""Refunds made at the provider outside our API (in Stripe's dashboard, say), learned
from `charge.refunded`. Stripe's charge says how much has been refunded of it in all
(`amount_refunded`, which also counts the part of a partial capture left uncaptured); what
exceeds what we refunded ourselves is recorded as a refund with its ledger entry, through
the same refund machinery as ours (out of escrow before release; after it, from the
worker's balance and the fee revenue pro rata)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.kit import money
from handwork_payments.models import (
    Booking,
    Payment,
    PaymentDispute,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
)
from handwork_payments.payments.escrow import apply_refund, refundable_now

REFUNDABLE_HERE = (PaymentStatus.HELD, PaymentStatus.DISPUTED, PaymentStatus.RELEASED)


async def refunded_at_provider_by_us(session: AsyncSession, payment: Payment) -> int:
    """What of `payment.refunded_amount` went back to the payer through the charge: all of
    it but lost chargebacks (the bank took that money, the charge's refunds do not show
    it)."""
    chargebacks = await session.scalar(
        select(func.coalesce(func.sum(PaymentRefund.amount), 0))
        .join(PaymentDispute, PaymentDispute.id == PaymentRefund.dispute_id)
        .where(
            PaymentRefund.payment_id == payment.id,
            PaymentRefund.status == RefundStatus.SUCCEEDED,
            PaymentDispute.provider_dispute_id.is_not(None),
        )
    )
    return payment.refunded_amount - int(chargebacks or 0)


async def record_external_refund(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    *,
    provider: str,
    provider_refunded: int,
    event_id: str,
) -> PaymentRefund | None:
    """Under the payment's lock, with no provider call of ours in flight for it (the
    caller checks: a refund of ours that Stripe made but we have not applied yet would
    look external). `provider_refunded` is the charge's running total, so a repeated or
    out-of-order event records nothing twice."""
    if payment.status not in REFUNDABLE_HERE:
        return None
    extra = provider_refunded - await refunded_at_provider_by_us(session, payment)
    remaining = refundable_now(payment)
    if extra <= 0 or remaining <= 0:
        return None
    if extra > remaining:
        await alert(
            session,
            "refund_mismatch",
            f"{provider} reports {money.format_amount(provider_refunded, payment.currency)} "
            f"{payment.currency} refunded of payment #{payment.id}, more than is left of it; "
            f"recording {money.format_amount(remaining, payment.currency)}",
            "payment",
            payment.id,
        )
        extra = remaining
    row = PaymentRefund(
        payment_id=payment.id,
        amount=extra,
        fee_part=0,
        reason=f"Refunded at {provider} outside this service ({event_id})",
        requested_by=None,
        before_release=payment.released_at is None,
        status=RefundStatus.PENDING,
    )
    session.add(row)
    await session.flush()
    await apply_refund(session, payment, booking, row, actor_id=None, actor_kind=provider)
    await alert(
        session,
        "external_refund",
        f"{money.format_amount(extra, payment.currency)} {payment.currency} of payment "
        f"#{payment.id} was refunded at {provider} outside this service: recorded as refund "
        f"#{row.id}",
        "payment",
        payment.id,
    )
    return row
