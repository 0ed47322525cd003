"""What PayPal's events do where PayPal differs from Stripe; everything else goes through
the generic handlers of `webhooks.events` (holds, captures, payouts).

- PAYMENT.CAPTURE.COMPLETED: the generic capture handler, given PayPal's capture id and
  amount (a capture made outside our API, in PayPal's dashboard, marks a held payment
  captured; ours are applied by the call that made them).
- PAYMENT.AUTHORIZATION.VOIDED: an authorisation we replaced (the hold guard's
  reauthorisation voids the original) is no news; while our reauthorisation is in flight
  the event waits. Else the generic handler (an authorisation lapsed under a held payment).
- PAYMENT.CAPTURE.REFUNDED: PayPal's capture refund total does not count what we never
  captured (a partial refund before release captures less), so Stripe's "running total
  minus ours" cannot work. Each refund is known by its id instead: ours carry it
  (`provider_refund_id`), one we do not know was made outside our API and is recorded
  once, under its id, through the refund machinery.
- PAYMENT.CAPTURE.REVERSED: PayPal (or the payer's bank) took the money back. Recorded once
  under the reversal's id, as a refund, unless a chargeback of the payment accounts for it
  (see disputes below).
- CUSTOMER.DISPUTE.CREATED / RESOLVED: chargebacks (disputes.chargebacks), the payment
  named through the disputed capture. PayPal's outcome code says won or lost. PayPal moves
  a dispute's money with refunds and reversals of their own, which may arrive before,
  between or after the dispute's events: while a dispute is open they are booked (the
  money left) and counted towards it, so a loss books only what they did not cover; after
  a loss they are booked only for what exceeds it. A dispute won after its money was
  reversed raises an alert (PayPal returns the money; the booked reversal needs a person).
  A reversal booked before its dispute was known is counted towards the dispute when it
  opens.
- PAYMENT.PAYOUTS-ITEM.*: found by the item id we store, or - for a batch whose answer
  never named its items - by our sender_item_id (`payout-{id}`) on the item, checked
  against the batch and amount. SUCCEEDED / FAILED / RETURNED / BLOCKED ... settle it
  (generic); UNCLAIMED (the receiver has no PayPal account yet, 30 days to claim) and HELD
  keep it processing, with an audit entry and an alert (once): the money may still arrive.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.connect import reversals
from handwork_payments.db import transaction
from handwork_payments.disputes.chargebacks import LOST, close_chargeback, open_chargeback
from handwork_payments.kit import money
from handwork_payments.models import (
    Alert,
    Booking,
    DisputeStatus,
    Payment,
    PaymentDispute,
    PaymentRefund,
    PayoutStatus,
    RefundStatus,
    WorkerPayout,
)
from handwork_payments.payments import repository as payments
from handwork_payments.payments.escrow import locked, operation_of
from handwork_payments.payments.external_refunds import (
    REFUNDABLE_HERE,
    record_external_refund,
    refunded_at_provider_by_us,
)
from handwork_payments.payments.operations import REAUTHORIZE
from handwork_payments.payouts import repository as payouts
from handwork_payments.payouts.service import apply_transfer
from handwork_payments.providers.base import (
    EventKind,
    ProviderEvent,
    ProviderTransfer,
    TransferState,
)
from handwork_payments.providers.paypal_events import minor_amount
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import events

log = logging.getLogger(__name__)

PROVIDER = "paypal"
# The reason of a refund row booked for a reversal (how a later dispute recognises it).
REVERSAL_REASON = "Reversed by PayPal"
_SENDER_ITEM = re.compile(r"^payout-(\d+)$")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --- captures and authorisations ---------------------------------------------------------


async def _captured(runtime: Runtime, event: ProviderEvent) -> None:
    """The generic handler reads Stripe's names for the capture and its amount."""
    data: dict[str, Any] = {**event.data, "latest_charge": _str(event.data.get("id"))}
    if event.amount is not None:
        data["amount_received"] = event.amount
    await events._captured_event(runtime, replace(event, data=data))


async def _voided(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    voided = _str(event.data.get("id"))
    async with runtime.sessions() as session:
        payment = await payments.by_provider_id(session, PROVIDER, event.object_id)
    if payment is not None:
        if operation_of(payment) == REAUTHORIZE:
            raise events.RetryLater(
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
    await events._hold_event(runtime, event)


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
        payment.refund_reason = row.reason
        if dispute is not None:
            row.dispute_id = dispute.id
    return row


async def _money_back(runtime: Runtime, event: ProviderEvent) -> None:
    """PAYMENT.CAPTURE.REFUNDED and .REVERSED: a refund or reversal, by its own id."""
    assert event.object_id is not None
    movement_id = _str(event.data.get("id"))
    # This refund's (or reversal's) own amount, not the capture's running total.
    own = minor_amount(event.data.get("amount"))
    amount = abs(own) if own is not None else event.amount
    if movement_id is None or not amount:
        log.warning("paypal event %s names no refund or amount: ignored", event.event_id)
        return
    reversal = event.event_type == "PAYMENT.CAPTURE.REVERSED"
    cover: int | None = None
    async with transaction(runtime.sessions) as session:
        found = await payments.by_provider_id(session, PROVIDER, event.object_id)
        if found is None:
            events._unknown(event)
            return
        payment, booking = await locked(session, found.id)
        if await _known_refund(session, payment, movement_id):
            return  # ours (applied by the call that made it), or recorded already
        # A refund of ours whose answer has not been applied yet looks the same.
        events._ensure_no_call_in_flight(payment, event)
        dispute = await _paypal_dispute(session, payment)
        amount_to_book = amount
        if dispute is not None and dispute.status == DisputeStatus.CLOSED:
            if dispute.refund_amount is None and not await _booked(
                session, dispute, movements=True
            ):
                dispute = None  # won (or closed without a loss): not this dispute's money
            else:
                # After a loss: only what exceeds the loss is new.
                covered = await _booked(session, dispute, movements=False)
                moved = await _booked(session, dispute, movements=True)
                amount_to_book = max(0, moved + amount - covered)
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
            return
        if reversal:
            await alert(
                session,
                "capture_reversed",
                f"PayPal reversed {money.format_amount(row.amount, payment.currency)} "
                f"{payment.currency} of payment #{payment.id} ({movement_id})"
                + (f", counted towards dispute #{dispute.id}" if dispute else ""),
                "payment",
                payment.id,
            )
        if not row.before_release:
            cover = row.id
    if cover is not None:
        await reversals.cover_refund(runtime, cover)


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
                PaymentRefund.reason.startswith(REVERSAL_REASON),
            )
        )
    ).all()
    for row in earlier:
        row.dispute_id = dispute.id


async def _dispute(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    if not event.dispute_id:
        log.warning("paypal event %s names no dispute: ignored", event.event_id)
        return
    cover: int | None = None
    async with transaction(runtime.sessions) as session:
        found = await payments.by_provider_id(session, PROVIDER, event.object_id)
        if found is None:
            events._unknown(event)
            return
        payment, booking = await locked(session, found.id)
        events._ensure_no_call_in_flight(payment, event)
        dispute = await open_chargeback(
            session,
            payment,
            provider=PROVIDER,
            provider_dispute_id=event.dispute_id,
            amount=event.amount,
            reason=event.failure_message,
        )
        if dispute is None:
            return
        await _count_earlier_reversals(session, payment, dispute)
        if event.kind != EventKind.DISPUTE_CLOSED or dispute.status == DisputeStatus.CLOSED:
            return
        outcome = _outcome(event)
        moved = await _booked(session, dispute, movements=True)
        row: PaymentRefund | None = None
        if event.dispute_won is False:
            disputed = event.amount if event.amount is not None else payment.amount
            left = disputed - moved
            if left > 0:
                row = await close_chargeback(
                    session,
                    payment,
                    booking,
                    dispute,
                    provider=PROVIDER,
                    status=LOST,
                    amount=left,
                )
            else:
                # PayPal's refunds and reversals took it already, and were booked then.
                await close_chargeback(
                    session,
                    payment,
                    booking,
                    dispute,
                    provider=PROVIDER,
                    status=f"{outcome}, taken back by PayPal already",
                    amount=None,
                )
                dispute.refund_amount = moved
        else:
            await close_chargeback(
                session, payment, booking, dispute, provider=PROVIDER, status=outcome, amount=None
            )
            if event.dispute_won is None or moved:
                await alert(
                    session,
                    "chargeback_check",
                    f"PayPal closed dispute {event.dispute_id} on payment #{payment.id} as "
                    f"{outcome}"
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
        if row is not None and not row.before_release:
            cover = row.id
    if cover is not None:
        await reversals.cover_refund(runtime, cover)


def _outcome(event: ProviderEvent) -> str:
    outcome = event.data.get("dispute_outcome")
    code = outcome.get("outcome_code") if isinstance(outcome, Mapping) else None
    return str(code or "RESOLVED")


# --- payout items ------------------------------------------------------------------------


async def _payout_for_item(session: AsyncSession, event: ProviderEvent) -> WorkerPayout | None:
    """The payout an item event is about, locked: by the item id we store, else by our
    sender_item_id on the item when the batch and amount agree."""
    assert event.object_id is not None
    found = await payouts.by_transfer_id(session, event.object_id)
    if found is not None:
        return await payouts.lock(session, found.id)
    item = event.data.get("payout_item")
    sender_item_id = _str(item.get("sender_item_id")) if isinstance(item, Mapping) else None
    match = _SENDER_ITEM.match(sender_item_id or "")
    if match is None:
        return None
    payout = await payouts.lock(session, int(match.group(1)))
    if payout is None or payout.payment_method != PROVIDER:
        return None
    batch_id = _str(event.data.get("payout_batch_id"))
    sender_batch_id = _str(event.data.get("sender_batch_id"))
    amount_money = item.get("amount") if isinstance(item, Mapping) else None
    currency = amount_money.get("currency") if isinstance(amount_money, Mapping) else None
    if (
        (payout.paypal_payout_id and payout.paypal_payout_id != event.object_id)
        or (batch_id and payout.paypal_batch_id and batch_id != payout.paypal_batch_id)
        or (sender_batch_id and payout.batch_key and sender_batch_id != payout.batch_key)
        or minor_amount(amount_money) != payout.amount
        or str(currency or "").upper() != payout.currency
    ):
        log.warning(
            "paypal event %s: item %s says %s but does not match payout %s",
            event.event_id,
            event.object_id,
            sender_item_id,
            payout.id,
        )
        return None
    return payout


async def _payout_item(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    async with transaction(runtime.sessions) as session:
        payout = await _payout_for_item(session, event)
        if payout is None:
            events._unknown(event)
            return
        batch_id = _str(event.data.get("payout_batch_id"))
        if event.kind in (EventKind.PAYOUT_SUCCEEDED, EventKind.PAYOUT_FAILED):
            state = (
                TransferState.SUCCEEDED
                if event.kind == EventKind.PAYOUT_SUCCEEDED
                else TransferState.FAILED
            )
            transfer = ProviderTransfer(
                event.object_id,
                state,
                payout.amount,
                payout.currency,
                batch_id,
                event.failure_message,
            )
            await apply_transfer(session, payout, transfer, actor_kind=PROVIDER)
            return
        # UNCLAIMED / HELD: still on its way. Keep the ids (to poll it) and say so once.
        payout.paypal_payout_id = payout.paypal_payout_id or event.object_id
        payout.paypal_batch_id = payout.paypal_batch_id or batch_id
        if payout.status != PayoutStatus.PROCESSING:
            return
        status = event.event_type.rsplit(".", 1)[-1].lower()
        kind = f"payout_{status}"
        exists = await session.scalar(
            select(Alert.id)
            .where(Alert.kind == kind, Alert.object_type == "payout", Alert.object_id == payout.id)
            .limit(1)
        )
        if exists is not None:
            return
        await record(
            session,
            actor_id=None,
            actor_kind=PROVIDER,
            action=f"payout.{status}",
            object_type="payout",
            object_id=payout.id,
            after={"status": payout.status, "paypal": event.failure_message},
        )
        await alert(
            session,
            kind,
            f"PayPal payout #{payout.id} to {payout.destination} is {status}"
            + (f" ({event.failure_message})" if event.failure_message else "")
            + ": it stays processing; PayPal returns it (and we give the amount back) if "
            "it is never claimed",
            "payout",
            payout.id,
        )


# --- dispatch --------------------------------------------------------------------------

Handler = Callable[[Runtime, ProviderEvent], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "PAYMENT.CAPTURE.COMPLETED": _captured,
    "PAYMENT.AUTHORIZATION.VOIDED": _voided,
    "PAYMENT.CAPTURE.REFUNDED": _money_back,
    "PAYMENT.CAPTURE.REVERSED": _money_back,
    "CUSTOMER.DISPUTE.CREATED": _dispute,
    "CUSTOMER.DISPUTE.RESOLVED": _dispute,
}


async def apply(runtime: Runtime, event: ProviderEvent) -> bool:
    """Apply a PayPal event whose handling differs from the generic one; False for the
    others (the caller applies them generically)."""
    handler = HANDLERS.get(event.event_type)
    if handler is None and event.event_type.startswith("PAYMENT.PAYOUTS-ITEM."):
        handler = _payout_item
    if handler is None:
        return False
    if event.object_id is None:
        log.info(
            "paypal event %s (%s) about nothing we can name: recorded, nothing to apply",
            event.event_id,
            event.event_type,
        )
        return True
    await handler(runtime, event)
    return True
