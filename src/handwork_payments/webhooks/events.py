"""What a verified provider event does to our objects. Every handler locks the object,
re-checks its state and applies only moves its state machine allows forward: a repeated,
late or out-of-order event changes nothing (a late "authorised" after release is a
no-op), and an event about an object we do not know is recorded and ignored.

While a provider call of ours is in flight for the object (a payment's
`provider_operation`, a pending transfer reversal), news that the call itself may have
caused cannot be told apart from news of something done outside our API: such handlers
raise RetryLater, and the inbox tries the delivery again with backoff, by when our own
call has been applied.

Stripe events and what they do:
- payment_intent.amount_capturable_updated: pending -> held (authorised).
- payment_intent.succeeded: captured. Pending -> held (captured); a held authorisation that
  someone captured (Stripe's dashboard; the hold guard's call whose answer was lost) is
  marked captured, without any entry (the escrow entry was made at the hold). Our own
  captures (release, hold guard) are applied by the call that made them.
- payment_intent.payment_failed: pending -> failed, and the intent is canceled at Stripe.
- payment_intent.canceled: pending -> failed; a held authorisation that lapsed (or was
  canceled in the dashboard) raises an alert: no money was ever captured.
- charge.refunded: what Stripe refunded beyond our own refunds is recorded as a refund.
- charge.dispute.created / .closed: chargebacks (disputes.chargebacks).
- transfer.reversed: a payout reversed at Stripe: returned in full (failed) or in part.
- account.updated: the connected account's payouts_enabled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.connect import reversals
from handwork_payments.db import transaction
from handwork_payments.disputes.chargebacks import close_chargeback, open_chargeback
from handwork_payments.models import (
    Alert,
    Booking,
    HoldKind,
    Payment,
    PaymentMethod,
    PaymentStatus,
    PayoutStatus,
    ReversalStatus,
    User,
)
from handwork_payments.payments import repository as payments
from handwork_payments.payments.escrow import (
    apply_capture,
    apply_failure,
    apply_hold,
    hold_ref,
    locked,
    operation_of,
    snapshot,
)
from handwork_payments.payments.external_refunds import record_external_refund
from handwork_payments.payments.operations import OperationKind
from handwork_payments.payments.service import void_failed_hold
from handwork_payments.payouts import repository as payouts
from handwork_payments.payouts.service import apply_transfer
from handwork_payments.providers.base import (
    EventKind,
    HoldState,
    ProviderEvent,
    ProviderHold,
    ProviderTransfer,
    TransferState,
)
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# Stripe card authorisations lapse 7 days after the intent was created.
STRIPE_AUTHORIZATION_DAYS = 7


class RetryLater(Exception):
    """The event cannot be applied yet (a provider call of ours is in flight for its
    object); the inbox retries the delivery with backoff."""


def _capture_by(event: ProviderEvent) -> datetime | None:
    created = event.data.get("created")
    if event.provider == "stripe" and isinstance(created, int):
        return datetime.fromtimestamp(created, UTC) + timedelta(days=STRIPE_AUTHORIZATION_DAYS)
    expires = event.data.get("expiration_time")
    if isinstance(expires, str):
        return datetime.fromisoformat(expires.replace("Z", "+00:00"))
    return None


def _unknown(event: ProviderEvent) -> None:
    log.info("%s event %s about unknown %s", event.provider, event.event_id, event.object_id)


def _refund_in_flight(payment: Payment) -> bool:
    operation = operation_of(payment)
    return operation is not None and operation.kind is OperationKind.REFUND


async def _locked_payment(
    session: AsyncSession, event: ProviderEvent
) -> tuple[Payment, Booking] | None:
    """The payment (and booking) an event is about, under their row locks; None, logged,
    for an object that is not ours."""
    assert event.object_id is not None
    found = await payments.by_provider_id(session, event.provider, event.object_id)
    if found is None:
        _unknown(event)
        return None
    return await locked(session, found.id)


async def _alert_once(
    session: AsyncSession, kind: str, message: str, object_type: str, object_id: int
) -> None:
    """An alert, unless the same one is already raised (a replayed delivery)."""
    exists = await session.scalar(
        select(Alert.id)
        .where(Alert.kind == kind, Alert.object_type == object_type, Alert.object_id == object_id)
        .limit(1)
    )
    if exists is None:
        await alert(session, kind, message, object_type, object_id)


def _ensure_no_call_in_flight(payment: Payment, event: ProviderEvent) -> None:
    if payment.provider_operation is not None:
        raise RetryLater(
            f"payment {payment.id} has a provider call in flight ({payment.provider_operation}); "
            f"{event.event_type} {event.event_id} is applied after it"
        )


# --- holds (every provider) ---------------------------------------------------------------


async def _current_hold(runtime: Runtime, event: ProviderEvent) -> ProviderHold | None:
    """For a payment still pending: the hold as the provider has it now (asked outside any
    transaction), else None."""
    assert event.object_id is not None
    async with runtime.sessions() as session:
        found = await payments.by_provider_id(session, event.provider, event.object_id)
    if found is None or found.status != PaymentStatus.PENDING:
        return None
    provider = runtime.providers.for_method(found.payment_method)
    return await provider.get_hold(hold_ref(found))


async def _hold_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    # Events about one intent may arrive in any order (a decline, then the retry that
    # authorised): a pending payment takes the provider's current state, whatever this
    # event says, so every order of delivery ends in the same state.
    current = await _current_hold(runtime, event)
    async with transaction(runtime.sessions) as session:
        target = await _locked_payment(session, event)
        if target is None:
            return
        payment, booking = target
        if current is not None and payment.status == PaymentStatus.PENDING:
            if current.amount != payment.amount:
                raise ValueError(
                    f"{event.provider} holds {current.amount} for payment #{payment.id}, "
                    f"which is {payment.amount}"
                )
            if current.state in (HoldState.AUTHORIZED, HoldState.CAPTURED):
                await apply_hold(
                    session, payment, booking, current, actor_id=None, actor_kind=event.provider
                )
            elif current.state in (HoldState.FAILED, HoldState.CANCELED):
                reason = current.failure_message or event.failure_message or event.event_type
                await apply_failure(
                    session, payment, reason, actor_id=None, actor_kind=event.provider
                )
            # Otherwise the payer is still at it: a later event tells the outcome.
        elif event.kind == EventKind.HOLD_AUTHORIZED:
            if event.amount is not None and event.amount != payment.amount:
                raise ValueError(
                    f"event {event.event_id} authorises {event.amount}, payment #{payment.id} "
                    f"is {payment.amount}"
                )
            hold = ProviderHold(
                provider_payment_id=event.object_id,
                state=HoldState.AUTHORIZED,
                amount=payment.amount,
                currency=payment.currency,
                authorization_id=event.data.get("authorization_id"),
                capture_by=_capture_by(event),
            )
            await apply_hold(
                session, payment, booking, hold, actor_id=None, actor_kind=event.provider
            )
        elif event.kind == EventKind.HOLD_FAILED:
            reason = event.failure_message or event.event_type
            await apply_failure(session, payment, reason, actor_id=None, actor_kind=event.provider)
        elif payment.status == PaymentStatus.PENDING:  # HOLD_CANCELED
            why = event.data.get("cancellation_reason") or event.failure_message
            reason = f"{event.event_type} ({why})" if why else event.event_type
            await apply_failure(session, payment, reason, actor_id=None, actor_kind=event.provider)
        elif (
            payment.status in (PaymentStatus.HELD, PaymentStatus.DISPUTED)
            and payment.hold_kind == HoldKind.AUTHORIZED
            and not _refund_in_flight(payment)
        ):
            await _authorization_lapsed(session, payment, event)
        # An authorisation (or a failure) of a payment we failed: the intent must not stay
        # completable. Not for a cancellation, which is the void itself.
        void = payment.status == PaymentStatus.FAILED and event.kind != EventKind.HOLD_CANCELED
        payment_id = payment.id
    if void:
        # No answer raises ProviderUnavailableError: the delivery is retried.
        await void_failed_hold(runtime, payment_id)


async def _authorization_lapsed(
    session: AsyncSession, payment: Payment, event: ProviderEvent
) -> None:
    """The provider canceled an authorisation we still count as held (Stripe lets it lapse
    after about 7 days; or someone canceled it in the dashboard). No money was captured:
    the escrow holds nothing real. An operator must act: refund it here (which voids
    nothing more at the provider and empties the escrow), or have the client pay again."""
    why = event.data.get("cancellation_reason") or event.failure_message or "unknown"
    await record(
        session,
        actor_id=None,
        actor_kind=event.provider,
        action="payment.authorization_lapsed",
        object_type="payment",
        object_id=payment.id,
        before=snapshot(payment),
        after={**snapshot(payment), "cancellation_reason": why},
    )
    await _alert_once(
        session,
        "authorization_lapsed",
        f"Payment #{payment.id} is {payment.status} but {event.provider} canceled its "
        f"authorisation ({why}) before it was captured: no money was ever captured. Refund it "
        "(POST /payments/refund) and ask the client to pay again.",
        "payment",
        payment.id,
    )


# --- Stripe: captures, refunds, chargebacks, transfers -------------------------------------


def _charge_id(data: Mapping[str, Any]) -> str | None:
    charge = data.get("latest_charge")
    if isinstance(charge, str):
        return charge
    if isinstance(charge, Mapping) and charge.get("id"):
        return str(charge["id"])
    return None


def _amount_received(data: Mapping[str, Any]) -> int | None:
    """What the intent captured: `amount_received`, else its expanded charge's."""
    if data.get("amount_received") is not None:
        return int(data["amount_received"])
    charge = data.get("latest_charge")
    if isinstance(charge, Mapping) and charge.get("amount_captured") is not None:
        return int(charge["amount_captured"])
    return None


async def _captured_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    capture_id = _charge_id(event.data)
    async with transaction(runtime.sessions) as session:
        target = await _locked_payment(session, event)
        if target is None:
            return
        payment, booking = target
        expected = payment.amount - payment.refunded_amount
        received = _amount_received(event.data)
        if received is None:
            received = expected  # a peer that does not say: what we hold
        if payment.status == PaymentStatus.PENDING:
            # Captured before we heard of the authorisation (a capture in the dashboard):
            # held, and held as captured money.
            hold = ProviderHold(
                provider_payment_id=event.object_id,
                state=HoldState.CAPTURED,
                amount=payment.amount,
                currency=payment.currency,
                capture_id=capture_id,
                captured_amount=received or payment.amount,
            )
            await apply_hold(
                session, payment, booking, hold, actor_id=None, actor_kind=event.provider
            )
        elif payment.status in (PaymentStatus.HELD, PaymentStatus.DISPUTED):
            if payment.hold_kind != HoldKind.AUTHORIZED or payment.provider_operation is not None:
                # Already applied, or our own call (a release's or the hold guard's
                # capture) is in flight: that call applies it, with this same capture.
                return
            before = snapshot(payment)
            apply_capture(payment, capture_id or payment.provider_capture_id or "", received)
            await record(
                session,
                actor_id=None,
                actor_kind=event.provider,
                action="payment.captured",
                object_type="payment",
                object_id=payment.id,
                before=before,
                after=snapshot(payment),
            )
        elif payment.status == PaymentStatus.FAILED:
            await _alert_once(
                session,
                "captured_after_failure",
                f"Payment #{payment.id} failed here, but {event.provider} captured "
                f"{received} (minor units) on {event.object_id}: refund it at the provider",
                "payment",
                payment.id,
            )
            return
        else:
            return  # released or refunded: our capture, applied with the release
        if received != expected:
            await _alert_once(
                session,
                "capture_mismatch",
                f"{event.provider} captured {received} of payment #{payment.id}, which holds "
                f"{expected} (minor units): someone captured another amount at the provider",
                "payment",
                payment.id,
            )


async def _refunded_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    if not event.data.get("captured", True):
        # An uncaptured charge "refunded" is a canceled authorisation:
        # payment_intent.canceled says so.
        log.info("stripe event %s refunds an uncaptured charge: ignored", event.event_id)
        return
    provider_refunded = int(event.data.get("amount_refunded") or event.amount or 0)
    cover: int | None = None
    async with transaction(runtime.sessions) as session:
        target = await _locked_payment(session, event)
        if target is None:
            return
        payment, booking = target
        _ensure_no_call_in_flight(payment, event)
        row = await record_external_refund(
            session,
            payment,
            booking,
            provider=event.provider,
            provider_refunded=provider_refunded,
            event_id=event.event_id,
        )
        if row is not None and not row.before_release:
            cover = row.id
    if cover is not None:
        await reversals.cover_refund(runtime, cover)


async def _dispute_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    if not event.dispute_id:
        log.warning("stripe event %s names no dispute: ignored", event.event_id)
        return
    cover: int | None = None
    async with transaction(runtime.sessions) as session:
        target = await _locked_payment(session, event)
        if target is None:
            return
        payment, booking = target
        _ensure_no_call_in_flight(payment, event)
        # Opened now unless it is already: a `closed` that overtook its `created` opens it
        # first, so the decision is applied to a dispute either way.
        dispute = await open_chargeback(
            session,
            payment,
            provider=event.provider,
            provider_dispute_id=event.dispute_id,
            amount=event.amount,
            reason=event.failure_message,
        )
        if dispute is not None and event.kind == EventKind.DISPUTE_CLOSED:
            status = str(event.data.get("status") or ("won" if event.dispute_won else "lost"))
            row = await close_chargeback(
                session,
                payment,
                booking,
                dispute,
                provider=event.provider,
                status=status,
                amount=event.amount,
            )
            if row is not None and not row.before_release:
                cover = row.id
    if cover is not None:
        await reversals.cover_refund(runtime, cover)


async def _transfer_reversed(runtime: Runtime, event: ProviderEvent) -> None:
    """A Connect transfer reversed at Stripe (the event comes for ours too). Reversed in
    full with no reversal of ours: the payout failed (returned), its amount goes back to
    the worker's available balance. Otherwise what exceeds the reversals we know of was
    reversed by someone else, and is recorded as such."""
    assert event.object_id is not None
    amount_reversed = int(event.data.get("amount_reversed") or 0)
    amount = int(event.data.get("amount") or 0)
    in_full = bool(event.data.get("reversed")) or (amount > 0 and amount_reversed >= amount)
    async with transaction(runtime.sessions) as session:
        found = await payouts.by_transfer_id(session, event.object_id)
        if found is None:
            _unknown(event)
            return
        payout = await payouts.lock(session, found.id)
        assert payout is not None
        if payout.status == PayoutStatus.FAILED:
            return
        known = await reversals.reversals_of(session, payout.id)
        if any(r.status == ReversalStatus.PENDING for r in known):
            raise RetryLater(
                f"payout {payout.id} has a reversal in flight; {event.event_id} is applied after it"
            )
        if in_full and not any(r.status == ReversalStatus.SUCCEEDED for r in known):
            transfer = ProviderTransfer(
                event.object_id,
                TransferState.FAILED,
                payout.amount,
                payout.currency,
                None,
                event.failure_message or "transfer reversed",
            )
            await apply_transfer(session, payout, transfer, actor_kind=event.provider)
            return
        if payout.status == PayoutStatus.PROCESSING:
            # The transfer exists, so it was made: settle it before its reversal.
            transfer = ProviderTransfer(
                event.object_id, TransferState.SUCCEEDED, payout.amount, payout.currency
            )
            await apply_transfer(session, payout, transfer, actor_kind=event.provider)
        if payout.status == PayoutStatus.COMPLETED:
            await reversals.record_external_reversal(
                session, payout, amount_reversed=amount_reversed, actor_kind=event.provider
            )


# --- payouts and accounts (every provider) ----------------------------------------------------


async def _payout_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    if event.provider == PaymentMethod.STRIPE and event.event_type == "transfer.reversed":
        await _transfer_reversed(runtime, event)
        return
    async with transaction(runtime.sessions) as session:
        found = await payouts.by_transfer_id(session, event.object_id)
        if found is None:
            _unknown(event)
            return
        payout = await payouts.lock(session, found.id)
        assert payout is not None
        state = (
            TransferState.SUCCEEDED
            if event.kind == EventKind.PAYOUT_SUCCEEDED
            else TransferState.FAILED
        )
        transfer = ProviderTransfer(
            event.object_id, state, payout.amount, payout.currency, None, event.failure_message
        )
        await apply_transfer(session, payout, transfer, actor_kind=event.provider)


async def _account_event(runtime: Runtime, event: ProviderEvent) -> None:
    """A connected account's `payouts_enabled`, on every worker it is the payout account
    of (normally one; PUT /payments/payout-methods lets a worker name any account)."""
    if event.payouts_enabled is None:
        return
    async with transaction(runtime.sessions) as session:
        users = (
            await session.scalars(
                select(User)
                .where(User.stripe_account_id == event.object_id)
                .order_by(User.id)
                .with_for_update()
            )
        ).all()
        if not users:
            _unknown(event)
        for user in users:
            if user.stripe_payouts_enabled == event.payouts_enabled:
                continue
            await record(
                session,
                actor_id=None,
                actor_kind=event.provider,
                action="stripe_account.updated",
                object_type="user",
                object_id=user.id,
                before={"payouts_enabled": user.stripe_payouts_enabled},
                after={"payouts_enabled": event.payouts_enabled},
            )
            user.stripe_payouts_enabled = event.payouts_enabled


Handler = Callable[[Runtime, ProviderEvent], Awaitable[None]]

HANDLERS: dict[EventKind, Handler] = {
    EventKind.HOLD_AUTHORIZED: _hold_event,
    EventKind.HOLD_FAILED: _hold_event,
    EventKind.HOLD_CANCELED: _hold_event,
    EventKind.PAYOUT_SUCCEEDED: _payout_event,
    EventKind.PAYOUT_FAILED: _payout_event,
    EventKind.ACCOUNT_UPDATED: _account_event,
}

# Stripe only: PayPal's captures, refunds and disputes carry other shapes (recorded and
# ignored until their handlers exist).
STRIPE_HANDLERS: dict[EventKind, Handler] = {
    EventKind.CAPTURED: _captured_event,
    EventKind.REFUNDED: _refunded_event,
    EventKind.DISPUTE_OPENED: _dispute_event,
    EventKind.DISPUTE_CLOSED: _dispute_event,
}


async def apply(runtime: Runtime, event: ProviderEvent) -> None:
    if event.provider == PaymentMethod.PAYPAL:
        # PayPal's refunds, reversals, disputes and payout items differ (webhooks.paypal,
        # which builds on this module: imported here).
        from handwork_payments.webhooks import paypal

        if await paypal.apply(runtime, event):
            return
    handler = HANDLERS.get(event.kind)
    if handler is None and event.provider == PaymentMethod.STRIPE:
        handler = STRIPE_HANDLERS.get(event.kind)
    if handler is None or event.object_id is None:
        log.info(
            "%s event %s (%s) recorded, nothing to apply",
            event.provider,
            event.event_id,
            event.event_type,
        )
        return
    await handler(runtime, event)
