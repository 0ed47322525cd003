"""Chargebacks: disputes the payer opened with their bank (or with PayPal), which the
providers report as DISPUTE_OPENED / DISPUTE_CLOSED events. The card network decides them, not our
admins (`resolve` refuses a dispute that has a provider_dispute_id).

- Opened on a held payment: the payment is frozen (held -> disputed) exactly as a dispute
  opened through our API, with the provider's dispute id on the dispute.
- Opened on a released (or refunded) payment: recorded as an open dispute with an alert,
  the payment's status unchanged. The money already left escrow: there is nothing to
  freeze in our books, and Stripe has already taken the disputed amount from the
  platform's balance; a loss is booked when the network decides (below).
- Closed as won (or an inquiry closed without a chargeback): the funds
  are unfrozen, a disputed payment goes back to held; nothing moves for a released one.
- Closed as lost: a refund-like entry for the disputed amount (no more than what is left of
  the payment), through the refund machinery: out of escrow before release; after it, out
  of the worker's available balance and the fee revenue pro rata. The caller then tries to
  cover the worker's debt by reversing their Stripe payouts (connect.reversals).

Appliers: called inside a transaction under the payment's lock; they never commit.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.bookings.service import AUTO_RELEASE_TASK
from handwork_payments.disputes import repository
from handwork_payments.disputes.losses import book_unrecovered_chargeback
from handwork_payments.disputes.service import (
    ACTIVE,
    add_open_dispute,
    alert_opened,
    audit_dispute,
    freeze,
)
from handwork_payments.disputes.states import DISPUTE
from handwork_payments.events import outbox
from handwork_payments.kit import jobs, money
from handwork_payments.kit.clock import now
from handwork_payments.models import (
    Booking,
    DisputeOutcome,
    DisputeStatus,
    Payment,
    PaymentDispute,
    PaymentRefund,
    PaymentStatus,
    RefundKind,
    RefundStatus,
)
from handwork_payments.payments.escrow import apply_refund, refundable_now, snapshot
from handwork_payments.payments.states import PAYMENT
from handwork_payments.providers.base import ChargebackOutcome, ProviderEvent

log = logging.getLogger(__name__)


async def _active_dispute(session: AsyncSession, payment_id: int) -> PaymentDispute | None:
    found = await session.scalar(
        select(PaymentDispute.id).where(
            PaymentDispute.payment_id == payment_id, PaymentDispute.status.in_(ACTIVE)
        )
    )
    return await repository.lock(session, found) if found is not None else None


async def _join_active_dispute(
    session: AsyncSession,
    payment: Payment,
    *,
    provider: str,
    provider_dispute_id: str,
    description: str,
) -> PaymentDispute | None:
    """A disputed payment's own dispute (the client's or worker's) becomes the bank's: the
    network decides it now. None when its dispute is a chargeback already."""
    active = await _active_dispute(session, payment.id)
    if active is None or active.provider_dispute_id is not None:
        return None
    active.provider_dispute_id = provider_dispute_id
    active.description = f"{active.description}\n\n{description}"
    await audit_dispute(
        session,
        active.id,
        "dispute.chargeback_linked",
        actor_kind=provider,
        after={"provider_dispute_id": provider_dispute_id},
    )
    await alert_opened(
        session,
        active.id,
        f"Chargeback {provider_dispute_id} on payment #{payment.id} joins dispute "
        f"#{active.id}: the card network decides it now",
    )
    return active


async def _record_open(
    session: AsyncSession,
    payment: Payment,
    *,
    provider: str,
    provider_dispute_id: str,
    reason: str,
    description: str,
    disputed: str,
) -> PaymentDispute:
    """A chargeback on a payment whose money left escrow: on record, the payment unmoved."""
    dispute = await add_open_dispute(
        session,
        payment,
        snapshot(payment),
        initiated_by=None,
        actor_kind=provider,
        reason=reason,
        description=description,
        provider_dispute_id=provider_dispute_id,
    )
    await alert_opened(
        session,
        dispute.id,
        f"Chargeback {provider_dispute_id} ({disputed} {payment.currency}) on {payment.status} "
        f"payment #{payment.id}: dispute #{dispute.id}; a loss would be taken back from the "
        "worker",
    )
    return dispute  # add_open_dispute told the marketplace


async def open_chargeback(
    session: AsyncSession, payment: Payment, event: ProviderEvent
) -> PaymentDispute | None:
    """The dispute of the chargeback a DISPUTE_* event is about, opened now unless it
    already is (a repeated or late event changes nothing; a `closed` that overtook its
    `created` opens it first, so the decision is applied to a dispute either way). None
    for a payment that never held money. The caller has made sure no provider call of ours
    is in flight for the payment."""
    provider, provider_dispute_id = event.provider, event.dispute_id
    assert provider_dispute_id, "the caller ignores an event that names no dispute"
    amount, reason = event.amount, event.failure_message
    existing = await repository.by_provider_id(session, provider_dispute_id)
    if existing is not None:
        return existing
    disputed = money.format_amount(
        amount if amount is not None else payment.amount, payment.currency
    )
    why = f"Chargeback ({reason or 'no reason given'})"
    description = (
        f"{provider} dispute {provider_dispute_id}: the payer's bank disputes {disputed} "
        f"{payment.currency}; the card network decides it"
    )
    if payment.status == PaymentStatus.HELD:
        return await freeze(
            session,
            payment,
            initiated_by=None,
            reason=why,
            description=description,
            provider_dispute_id=provider_dispute_id,
        )
    if payment.status == PaymentStatus.DISPUTED:
        joined = await _join_active_dispute(
            session,
            payment,
            provider=provider,
            provider_dispute_id=provider_dispute_id,
            description=description,
        )
        if joined is not None:
            return joined
    if payment.status in (PaymentStatus.PENDING, PaymentStatus.FAILED):
        log.warning(
            "chargeback %s on payment %s, which is %s: recorded nowhere",
            provider_dispute_id,
            payment.id,
            payment.status,
        )
        return None
    # Released or refunded (or disputed with another chargeback, which Stripe never does):
    # on record without moving the payment, whose money is no longer in escrow.
    return await _record_open(
        session,
        payment,
        provider=provider,
        provider_dispute_id=provider_dispute_id,
        reason=why,
        description=description,
        disputed=disputed,
    )


async def _book_loss(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    dispute: PaymentDispute,
    *,
    provider: str,
    amount: int | None,
) -> PaymentRefund | None:
    """A lost chargeback's refund-like entry for the disputed amount (no more than what is
    left of the payment); None, with an alert, when nothing is left."""
    remaining = refundable_now(payment)
    taken = min(amount if amount is not None else remaining, remaining)
    unrecovered = (amount or 0) - max(taken, 0)
    if unrecovered > 0:
        # The payer was refunded already and the bank takes it again: the platform's loss.
        await book_unrecovered_chargeback(session, payment, dispute, unrecovered)
        await alert(
            session,
            "chargeback_unbooked",
            f"Chargeback {dispute.provider_dispute_id} lost on payment #{payment.id}, which "
            f"was already refunded: the platform bears "
            f"{money.format_amount(unrecovered, payment.currency)} {payment.currency} "
            "(booked to platform losses)",
            "dispute",
            dispute.id,
        )
    if taken <= 0:
        return None
    row = PaymentRefund(
        payment_id=payment.id,
        amount=taken,
        fee_part=0,
        reason=f"Chargeback lost ({provider} dispute {dispute.provider_dispute_id})",
        kind=RefundKind.CHARGEBACK,
        requested_by=None,
        dispute_id=dispute.id,
        before_release=payment.released_at is None,
        status=RefundStatus.PENDING,
    )
    session.add(row)
    await session.flush()
    await apply_refund(session, payment, booking, row, actor_id=None, actor_kind=provider)
    dispute.outcome = (
        DisputeOutcome.REFUND if payment.status == PaymentStatus.REFUNDED else DisputeOutcome.SPLIT
    )
    dispute.refund_amount = taken
    return row


async def _alert_loss(
    session: AsyncSession, payment: Payment, dispute: PaymentDispute, row: PaymentRefund | None
) -> None:
    if row is None:
        outcome = "nothing left to take back"
    else:
        source = "from escrow" if row.before_release else "taken back from the worker"
        taken_text = money.format_amount(row.amount, payment.currency)
        outcome = f"{taken_text} {payment.currency} refunded to the payer ({source})"
    await alert(
        session,
        "chargeback_lost",
        f"Chargeback {dispute.provider_dispute_id} on payment #{payment.id} lost: {outcome}",
        "dispute",
        dispute.id,
    )


async def _reschedule_auto_release(
    session: AsyncSession, payment: Payment, booking: Booking
) -> None:
    """A completed booking's payment held again after a chargeback: its automatic release
    (whose deadline may have passed while the money was frozen, its job skipped) gets the
    same window again, from now, with a job of its own."""
    if payment.auto_release_at is None or booking.completed_at is None:
        return  # never completed, or automatic release disabled
    window = payment.auto_release_at - booking.completed_at
    payment.auto_release_at = now() + window
    await jobs.defer(
        session,
        AUTO_RELEASE_TASK,
        args={"payment_id": payment.id},
        scheduled_at=payment.auto_release_at,
    )


async def close_chargeback(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    dispute: PaymentDispute,
    *,
    provider: str,
    outcome: ChargebackOutcome,
    detail: str,
    amount: int | None,
) -> PaymentRefund | None:
    """Apply the decision on `dispute`: LOST takes `amount` back (a refund-like row, which
    is returned); WON and UNKNOWN unfreeze the funds. `detail` is the provider's word for
    it, for the notes. None when nothing was taken (or the dispute was closed already)."""
    dispute = await repository.lock(session, dispute.id) or dispute
    if dispute.status == DisputeStatus.CLOSED:
        return None
    lost = outcome is ChargebackOutcome.LOST
    before = {"status": dispute.status, "payment_status": payment.status}
    row: PaymentRefund | None = None
    if lost:
        row = await _book_loss(session, payment, booking, dispute, provider=provider, amount=amount)
    if payment.status == PaymentStatus.DISPUTED:
        # Won, or lost in part: what is left is held again, for the client to release.
        PAYMENT.check(payment.status, PaymentStatus.HELD)
        payment.status = PaymentStatus.HELD
        await _reschedule_auto_release(session, payment, booking)
    DISPUTE.check(dispute.status, DisputeStatus.CLOSED)
    dispute.status = DisputeStatus.CLOSED
    dispute.resolved_at = now()
    taken = (
        f"; {money.format_amount(row.amount, payment.currency)} {payment.currency} taken back"
        if row
        else ""
    )
    dispute.resolution_notes = (
        f"{provider} closed dispute {dispute.provider_dispute_id}: {detail}{taken}"
    )
    await audit_dispute(
        session,
        dispute.id,
        "dispute.closed",
        actor_kind=provider,
        before=before,
        after={
            "status": dispute.status,
            "payment_status": payment.status,
            "provider_status": detail,
            "refund_id": row.id if row else None,
        },
    )
    if lost:
        await _alert_loss(session, payment, dispute, row)
    await outbox.dispute_event(session, "dispute.resolved", dispute)
    return row
