"""What PayPal's events do where PayPal differs from Stripe; holds, captures and payout
items go through the shared handlers of `webhooks.handlers`.

- PAYMENT.AUTHORIZATION.VOIDED (HOLD_CANCELED): an authorisation we replaced (the hold guard's
  reauthorisation voids the original) is no news; while our reauthorisation is in flight
  the event waits. Else the generic handler (an authorisation lapsed under a held payment).
- PAYMENT.CAPTURE.REFUNDED (REFUNDED): PayPal's capture refund total does not count what we never
  captured (a partial refund before release captures less), so Stripe's "running total
  minus ours" cannot work. Each refund is known by its id instead: ours carry it
  (`provider_refund_id`), one we do not know was made outside our API and is recorded
  once, under its id, through the refund machinery.
- PAYMENT.CAPTURE.REVERSED (REFUNDED, a reversal): PayPal (or the payer's bank) took the
  money back. Recorded once under the reversal's id, as a refund, unless a chargeback of
  the payment accounts for it (see disputes below).
- CUSTOMER.DISPUTE.CREATED / RESOLVED (DISPUTE_OPENED / CLOSED): chargebacks
  (disputes.chargebacks), the payment named through the disputed capture; the adapter reads
  PayPal's outcome code as won, lost or unknown. PayPal moves
  a dispute's money with refunds and reversals of their own, which may arrive before,
  between or after the dispute's events: while a dispute is open they are booked (the
  money left) and counted towards it, so a loss books only what they did not cover; after
  a loss they are booked only for what exceeds it. A dispute won after its money was
  reversed raises an alert (PayPal returns the money; the booked reversal needs a person).
  A reversal booked before its dispute was known is counted towards the dispute when it
  opens.
"""

from __future__ import annotations

import functools
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.disputes.chargebacks import close_chargeback
from handwork_payments.kit import money
from handwork_payments.models import (
    Booking,
    DisputeStatus,
    Payment,
    PaymentDispute,
    PaymentRefund,
    RefundKind,
    RefundStatus,
)
from handwork_payments.payments import repository as payments
from handwork_payments.payments.escrow import operation_of
from handwork_payments.payments.external_refunds import (
    REFUNDABLE_HERE,
    record_external_refund,
    refunded_at_provider_by_us,
)
from handwork_payments.payments.operations import REAUTHORIZE
from handwork_payments.providers.base import ChargebackOutcome, EventKind, ProviderEvent
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks.handlers import (
    RetryLater,
    apply_dispute,
    ensure_no_call_in_flight,
    hold_event,
    run_on_payment,
)

log = logging.getLogger(__name__)

PROVIDER = "paypal"
# The reason of a refund row booked for a reversal (how a later dispute recognises it).
REVERSAL_REASON = "Reversed by PayPal"


# --- authorisations -----------------------------------------------------------------------


async def voided_event(runtime: Runtime, event: ProviderEvent) -> None:
    """HOLD_CANCELED: an authorisation voided."""
    assert event.object_id is not None
    voided = event.authorization_id
    async with runtime.sessions() as session:
        payment = await payments.by_provider_id(session, PROVIDER, event.object_id)
    if payment is not None:
        if operation_of(payment) == REAUTHORIZE:
            raise RetryLater(
                f"payment {payment.id} is being reauthorised; {event.event_id} waits for it"
            )
        current = payment.provider_authorization_id
        if voided and current and voided != current:
            log.info(
                "paypal event %s voids authorisation %s, replaced by %s: nothing to do",
                event.event_id,
                voided,
                current,
            )
            return
    await hold_event(runtime, event)


# --- refunds, reversals and disputes: PayPal taking money back -----------------------------


async def _known_refund(session: AsyncSession, payment: Payment, provider_refund_id: str) -> bool:
    found = await session.scalar(
        select(PaymentRefund.id)
        .where(
            PaymentRefund.payment_id == payment.id,
            PaymentRefund.provider_refund_id == provider_refund_id,
        )
        .limit(1)
    )
    return found is not None


async def _paypal_dispute(session: AsyncSession, payment: Payment) -> PaymentDispute | None:
    """The payment's latest chargeback (a dispute PayPal opened), locked."""
    found = await session.scalar(
        select(PaymentDispute.id)
        .where(
            PaymentDispute.payment_id == payment.id,
            PaymentDispute.provider_dispute_id.is_not(None),
        )
        .order_by(PaymentDispute.id.desc())
        .limit(1)
    )
    if found is None:
        return None
    return await session.get(PaymentDispute, found, with_for_update=True, populate_existing=True)


async def _booked(session: AsyncSession, dispute: PaymentDispute, *, movements: bool) -> int:
    """What is booked for `dispute`: all of it, or (movements) only PayPal's refunds and
    reversals counted towards it."""
    query = select(func.coalesce(func.sum(PaymentRefund.amount), 0)).where(
        PaymentRefund.dispute_id == dispute.id, PaymentRefund.status == RefundStatus.SUCCEEDED
    )
    if movements:
        query = query.where(PaymentRefund.provider_refund_id.is_not(None))
    return int(await session.scalar(query) or 0)


async def _book(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    *,
    amount: int,
    provider_refund_id: str,
    reason: str,
    event: ProviderEvent,
    dispute: PaymentDispute | None,
    kind: RefundKind = RefundKind.REFUND,
) -> PaymentRefund | None:
    """A refund of `amount` PayPal made (or took), through the refund machinery, once."""
    if payment.status not in REFUNDABLE_HERE or amount <= 0:
        return None
    provider_refunded = await refunded_at_provider_by_us(session, payment) + amount
    row = await record_external_refund(
        session,
        payment,
        booking,
        provider=PROVIDER,
        provider_refunded=provider_refunded,
        event_id=event.event_id,
    )
    if row is not None:
        row.provider_refund_id = provider_refund_id
        row.reason = f"{reason} ({provider_refund_id}, {event.event_id})"
        row.kind = kind
        payment.refund_reason = row.reason
        if dispute is not None:
            row.dispute_id = dispute.id
    return row


async def _counted_towards(
    session: AsyncSession, payment: Payment, amount: int
) -> tuple[PaymentDispute | None, int]:
    """The chargeback a movement of `amount` counts towards (if any), and what of it is
    still to book: after a loss, only what exceeds the loss is new."""
    dispute = await _paypal_dispute(session, payment)
    if dispute is None or dispute.status != DisputeStatus.CLOSED:
        return dispute, amount
    if dispute.refund_amount is None and not await _booked(session, dispute, movements=True):
        return None, amount  # won (or closed without a loss): not this dispute's money
    covered = await _booked(session, dispute, movements=False)
    moved = await _booked(session, dispute, movements=True)
    return dispute, max(0, moved + amount - covered)


async def money_back_event(runtime: Runtime, event: ProviderEvent) -> None:
    """REFUNDED: a refund or reversal, by its own id and its own amount (not the capture's
    running total)."""
    assert event.object_id is not None
    movement_id, amount, reversal = event.refund_id, event.refund_amount, event.reversal
    if movement_id is None or not amount:
        log.warning("paypal event %s names no refund or amount: ignored", event.event_id)
        return

    async def step(
        session: AsyncSession, payment: Payment, booking: Booking
    ) -> PaymentRefund | None:
        if await _known_refund(session, payment, movement_id):
            return None  # ours (applied by the call that made it), or recorded already
        # A refund of ours whose answer has not been applied yet looks the same.
        ensure_no_call_in_flight(payment, event)
        dispute, amount_to_book = await _counted_towards(session, payment, amount)
        reason = REVERSAL_REASON if reversal else f"Refunded at {PROVIDER} outside this service"
        row = await _book(
            session,
            payment,
            booking,
            amount=amount_to_book,
            provider_refund_id=movement_id,
            reason=reason,
            event=event,
            dispute=dispute,
            kind=RefundKind.REVERSAL if reversal else RefundKind.REFUND,
        )
        if row is None:
            await record(
                session,
                actor_id=None,
                actor_kind=PROVIDER,
                action="payment.refund_covered" if dispute else "payment.refund_ignored",
                object_type="payment",
                object_id=payment.id,
                after={
                    "event": event.event_type,
                    "provider_refund_id": movement_id,
                    "amount": amount,
                    "dispute_id": dispute.id if dispute else None,
                    "payment_status": payment.status,
                },
            )
        elif reversal:
            await alert(
                session,
                "capture_reversed",
                f"PayPal reversed {money.format_amount(row.amount, payment.currency)} "
                f"{payment.currency} of payment #{payment.id} ({movement_id})"
                + (f", counted towards dispute #{dispute.id}" if dispute else ""),
                "payment",
                payment.id,
            )
        return row

    await run_on_payment(runtime, event, step)


async def _count_earlier_reversals(
    session: AsyncSession, payment: Payment, dispute: PaymentDispute
) -> None:
    """Reversals booked before the dispute was known are its money: count them towards it."""
    earlier = (
        await session.scalars(
            select(PaymentRefund).where(
                PaymentRefund.payment_id == payment.id,
                PaymentRefund.dispute_id.is_(None),
                PaymentRefund.provider_refund_id.is_not(None),
                PaymentRefund.kind == RefundKind.REVERSAL,
            )
        )
    ).all()
    for row in earlier:
        row.dispute_id = dispute.id


async def _close(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    dispute: PaymentDispute,
    event: ProviderEvent,
) -> PaymentRefund | None:
    """PayPal's decision: a loss books what PayPal's own refunds and reversals did not
    cover already; a win (or an unknown outcome) unfreezes, with an alert when money was
    booked as reversed meanwhile or when the outcome is not known."""
    detail = event.dispute_detail or "RESOLVED"
    outcome = event.dispute_outcome or ChargebackOutcome.UNKNOWN
    moved = await _booked(session, dispute, movements=True)
    close = functools.partial(
        close_chargeback, session, payment, booking, dispute, provider=PROVIDER
    )
    if outcome is ChargebackOutcome.LOST:
        disputed = event.amount if event.amount is not None else payment.amount
        left = disputed - moved
        if left > 0:
            return await close(outcome=outcome, detail=outcome, amount=left)
        # PayPal's refunds and reversals took it already, and were booked then: nothing
        # more to take back (closed as UNKNOWN, which books nothing).
        await close(
            outcome=ChargebackOutcome.UNKNOWN,
            detail=f"{detail}, taken back by PayPal already",
            amount=None,
        )
        dispute.refund_amount = moved
        return None
    await close(outcome=outcome, detail=detail, amount=None)
    if outcome is ChargebackOutcome.UNKNOWN or moved:
        await alert(
            session,
            "chargeback_check",
            f"PayPal closed dispute {event.dispute_id} on payment #{payment.id} as {detail}"
            + (
                f", but {money.format_amount(moved, payment.currency)} "
                f"{payment.currency} of it was booked as reversed: PayPal returns it, "
                "book it back by hand"
                if moved
                else ": not known to be won or lost, check it at PayPal"
            ),
            "dispute",
            dispute.id,
        )
    return None


async def dispute_event(runtime: Runtime, event: ProviderEvent) -> None:
    """DISPUTE_OPENED, DISPUTE_CLOSED."""

    async def settle(
        session: AsyncSession, payment: Payment, booking: Booking, dispute: PaymentDispute
    ) -> PaymentRefund | None:
        await _count_earlier_reversals(session, payment, dispute)
        if event.kind != EventKind.DISPUTE_CLOSED or dispute.status == DisputeStatus.CLOSED:
            return None
        return await _close(session, payment, booking, dispute, event)

    await apply_dispute(runtime, event, settle)
