"""The handlers every provider shares: what a verified, translated event does to our
objects (holds, captures, payouts, accounts), and the helpers the provider-specific
handlers (`webhooks.stripe`, `webhooks.paypal`) build on. Handlers read only the typed
fields of ProviderEvent, never a provider's field names. Every handler locks the object,
re-checks its state and applies only moves its state machine allows forward: a repeated,
late or out-of-order event changes nothing (a late "authorised" after release is a
no-op), and an event about an object we do not know is recorded and ignored.

While a provider call of ours is in flight for the object (a payment's
`provider_operation`, a pending transfer reversal), news that the call itself may have
caused cannot be told apart from news of something done outside our API: such handlers
raise RetryLater, and the inbox tries the delivery again with backoff, by when our own
call has been applied.

What the shared handlers do:
- HOLD_AUTHORIZED: pending -> held (authorised).
- CAPTURED: pending -> held (captured); a held authorisation that someone captured (the
  provider's dashboard; the hold guard's call whose answer was lost) is marked captured,
  without any entry (the escrow entry was made at the hold). Our own captures (release,
  hold guard) are applied by the call that made them.
- HOLD_FAILED: pending -> failed, and the hold is voided at the provider.
- HOLD_CANCELED: pending -> failed; a held authorisation that lapsed (or was canceled in the
  dashboard) raises an alert: no money was ever captured.
- PAYOUT_SUCCEEDED / FAILED settle the payout; PAYOUT_DELAYED (PayPal UNCLAIMED / HELD)
  keeps it processing, with an audit entry and an alert (once): the money may still arrive.
- ACCOUNT_UPDATED: the connected account's payouts_enabled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.connect import reversals
from handwork_payments.db import transaction
from handwork_payments.disputes.chargebacks import open_chargeback
from handwork_payments.models import (
    Alert,
    Booking,
    HoldKind,
    Payment,
    PaymentDispute,
    PaymentRefund,
    PaymentStatus,
    PayoutStatus,
    User,
    WorkerPayout,
)
from handwork_payments.payments import repository as payments
from handwork_payments.payments.escrow import (
    apply_capture,
    apply_failure,
    apply_hold,
    audit_payment,
    hold_ref,
    locked,
    operation_of,
    snapshot,
)
from handwork_payments.payments.operations import OperationKind
from handwork_payments.payments.provider_fees import book_capture_fee
from handwork_payments.payments.service import void_failed_hold
from handwork_payments.payouts import repository as payouts
from handwork_payments.payouts.audit import audit_payout
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


class RetryLater(Exception):
    """The event cannot be applied yet (a provider call of ours is in flight for its
    object); the inbox retries the delivery with backoff."""


def unknown(event: ProviderEvent) -> None:
    log.info("%s event %s about unknown %s", event.provider, event.event_id, event.object_id)


def refund_in_flight(payment: Payment) -> bool:
    operation = operation_of(payment)
    return operation is not None and operation.kind is OperationKind.REFUND


async def locked_payment(
    session: AsyncSession, event: ProviderEvent
) -> tuple[Payment, Booking] | None:
    """The payment (and booking) an event is about, under their row locks; None, logged,
    for an object that is not ours."""
    assert event.object_id is not None
    found = await payments.by_provider_id(session, event.provider, event.object_id)
    if found is None:
        unknown(event)
        return None
    return await locked(session, found.id)


async def alert_once(
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


def ensure_no_call_in_flight(payment: Payment, event: ProviderEvent) -> None:
    if payment.provider_operation is not None:
        raise RetryLater(
            f"payment {payment.id} has a provider call in flight ({payment.provider_operation}); "
            f"{event.event_type} {event.event_id} is applied after it"
        )


PaymentStep = Callable[[AsyncSession, Payment, Booking], Awaitable[PaymentRefund | None]]
DisputeStep = Callable[
    [AsyncSession, Payment, Booking, PaymentDispute], Awaitable[PaymentRefund | None]
]


async def run_on_payment(runtime: Runtime, event: ProviderEvent, step: PaymentStep) -> None:
    """Run `step` on the event's payment under its row lock. A refund the step books after
    the release is then covered from the worker's payout: after the commit, as covering
    calls the provider."""
    cover: int | None = None
    async with transaction(runtime.sessions) as session:
        target = await locked_payment(session, event)
        if target is None:
            return
        row = await step(session, *target)
        if row is not None and not row.before_release:
            cover = row.id
    if cover is not None:
        await reversals.cover_refund(runtime, cover)


async def apply_to_payment(runtime: Runtime, event: ProviderEvent, step: PaymentStep) -> None:
    """`run_on_payment`, once no call of ours is in flight on the payment (else
    RetryLater)."""

    async def checked(
        session: AsyncSession, payment: Payment, booking: Booking
    ) -> PaymentRefund | None:
        ensure_no_call_in_flight(payment, event)
        return await step(session, payment, booking)

    await run_on_payment(runtime, event, checked)


async def apply_dispute(runtime: Runtime, event: ProviderEvent, settle: DisputeStep) -> None:
    """DISPUTE_OPENED, DISPUTE_CLOSED: the chargeback opened (once) on the event's payment,
    then `settle` does what the provider's way of deciding it asks."""
    assert event.object_id is not None
    if not event.dispute_id:
        log.warning("%s event %s names no dispute: ignored", event.provider, event.event_id)
        return

    async def step(
        session: AsyncSession, payment: Payment, booking: Booking
    ) -> PaymentRefund | None:
        dispute = await open_chargeback(session, payment, event)
        if dispute is None:
            return None
        return await settle(session, payment, booking, dispute)

    await apply_to_payment(runtime, event, step)


# --- holds --------------------------------------------------------------------------------


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


async def _take_current_hold(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    current: ProviderHold,
    event: ProviderEvent,
) -> None:
    """A pending payment takes the provider's current state, whatever the event says."""
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
        await apply_failure(session, payment, reason, actor_id=None, actor_kind=event.provider)
    # Otherwise the payer is still at it: a later event tells the outcome.


async def _apply_hold_news(
    session: AsyncSession, payment: Payment, booking: Booking, event: ProviderEvent
) -> None:
    """What the event itself says, for a payment past pending (or not asked about)."""
    assert event.object_id is not None
    if event.kind == EventKind.HOLD_AUTHORIZED:
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
            authorization_id=event.authorization_id,
            capture_by=event.capture_by,
        )
        await apply_hold(session, payment, booking, hold, actor_id=None, actor_kind=event.provider)
    elif event.kind == EventKind.HOLD_FAILED:
        reason = event.failure_message or event.event_type
        await apply_failure(session, payment, reason, actor_id=None, actor_kind=event.provider)
    elif payment.status == PaymentStatus.PENDING:  # HOLD_CANCELED
        why = event.cancellation_reason or event.failure_message
        reason = f"{event.event_type} ({why})" if why else event.event_type
        await apply_failure(session, payment, reason, actor_id=None, actor_kind=event.provider)
    elif (
        payment.status in (PaymentStatus.HELD, PaymentStatus.DISPUTED)
        and payment.hold_kind == HoldKind.AUTHORIZED
        and not refund_in_flight(payment)
    ):
        await _authorization_lapsed(session, payment, event)


async def hold_event(runtime: Runtime, event: ProviderEvent) -> None:
    """HOLD_AUTHORIZED, HOLD_FAILED, HOLD_CANCELED."""
    # Events about one hold may arrive in any order (a decline, then the retry that
    # authorised): a pending payment takes the provider's current state, whatever this
    # event says, so every order of delivery ends in the same state.
    current = await _current_hold(runtime, event)
    async with transaction(runtime.sessions) as session:
        target = await locked_payment(session, event)
        if target is None:
            return
        payment, booking = target
        if current is not None and payment.status == PaymentStatus.PENDING:
            await _take_current_hold(session, payment, booking, current, event)
        else:
            await _apply_hold_news(session, payment, booking, event)
        # An authorisation (or a failure) of a payment we failed: the hold must not stay
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
    why = event.cancellation_reason or event.failure_message or "unknown"
    await audit_payment(
        session,
        payment,
        "payment.authorization_lapsed",
        actor_id=None,
        actor_kind=event.provider,
        before=snapshot(payment),
        cancellation_reason=why,
    )
    await alert_once(
        session,
        "authorization_lapsed",
        f"Payment #{payment.id} is {payment.status} but {event.provider} canceled its "
        f"authorisation ({why}) before it was captured: no money was ever captured. Refund it "
        "(POST /payments/refund) and ask the client to pay again.",
        "payment",
        payment.id,
    )


# --- captures -----------------------------------------------------------------------------


async def _mark_captured(
    session: AsyncSession, payment: Payment, event: ProviderEvent, received: int, fee: int | None
) -> bool:
    """A held authorisation captured outside our calls: marked captured. False when there
    is nothing to do (applied already, or our own call is in flight and applies it)."""
    if payment.hold_kind != HoldKind.AUTHORIZED or payment.provider_operation is not None:
        return False
    before = snapshot(payment)
    capture_id = event.capture_id or payment.provider_capture_id or ""
    await apply_capture(session, payment, capture_id, received, fee)
    await audit_payment(
        session,
        payment,
        "payment.captured",
        actor_id=None,
        actor_kind=event.provider,
        before=before,
    )
    return True


async def _capture_fee(runtime: Runtime, event: ProviderEvent) -> int | None:
    """The provider's fee on the capture the event reports: the event's own, else (Stripe
    events carry the balance transaction as an id only) the hold as the provider has it
    now, asked outside any transaction; None when our books have it already."""
    if event.fee is not None:
        return event.fee
    assert event.object_id is not None
    async with runtime.sessions() as session:
        found = await payments.by_provider_id(session, event.provider, event.object_id)
    if found is None or found.provider_fee is not None or found.status == PaymentStatus.FAILED:
        return None
    provider = runtime.providers.for_method(found.payment_method)
    return (await provider.get_hold(hold_ref(found))).fee


async def captured_event(runtime: Runtime, event: ProviderEvent) -> None:
    """CAPTURED: the capture id and amount as the adapter read them, and the provider's
    fee, booked once whichever of our call and this event comes first."""
    assert event.object_id is not None
    fee = await _capture_fee(runtime, event)
    async with transaction(runtime.sessions) as session:
        target = await locked_payment(session, event)
        if target is None:
            return
        payment, booking = target
        expected = payment.amount - payment.refunded_amount
        # A peer that does not say what it captured: what we hold.
        received = event.captured_amount if event.captured_amount is not None else expected
        if payment.status == PaymentStatus.PENDING:
            # Captured before we heard of the authorisation (a capture in the dashboard):
            # held, and held as captured money.
            hold = ProviderHold(
                provider_payment_id=event.object_id,
                state=HoldState.CAPTURED,
                amount=payment.amount,
                currency=payment.currency,
                capture_id=event.capture_id,
                captured_amount=received or payment.amount,
                fee=fee,
            )
            await apply_hold(
                session, payment, booking, hold, actor_id=None, actor_kind=event.provider
            )
        elif payment.status in (PaymentStatus.HELD, PaymentStatus.DISPUTED):
            if not await _mark_captured(session, payment, event, received, fee):
                if payment.hold_kind == HoldKind.CAPTURED:
                    await book_capture_fee(session, payment, fee)
                return
        elif payment.status == PaymentStatus.FAILED:
            await alert_once(
                session,
                "captured_after_failure",
                f"Payment #{payment.id} failed here, but {event.provider} captured "
                f"{received} (minor units) on {event.object_id}: refund it at the provider",
                "payment",
                payment.id,
            )
            return
        else:
            # Released or refunded: our capture, applied with the release (its fee too,
            # unless the provider's answer did not say it).
            await book_capture_fee(session, payment, fee)
            return
        if received != expected:
            await alert_once(
                session,
                "capture_mismatch",
                f"{event.provider} captured {received} of payment #{payment.id}, which holds "
                f"{expected} (minor units): someone captured another amount at the provider",
                "payment",
                payment.id,
            )


# --- payouts and accounts -----------------------------------------------------------------


async def _payout_by_reference(session: AsyncSession, event: ProviderEvent) -> WorkerPayout | None:
    """A payout whose item id we never learnt (a batch whose answer never named its items),
    by our own payout id on the item, locked, when the batch, amount and currency agree."""
    if event.payout_id is None:
        return None
    payout = await payouts.lock(session, event.payout_id)
    if payout is None or payout.payment_method != event.provider:
        return None
    if (
        (payout.paypal_payout_id and payout.paypal_payout_id != event.object_id)
        or (
            event.transfer_batch_id
            and payout.paypal_batch_id
            and event.transfer_batch_id != payout.paypal_batch_id
        )
        or (event.batch_key and payout.batch_key and event.batch_key != payout.batch_key)
        or event.amount != payout.amount
        or (event.currency or "") != payout.currency
    ):
        log.warning(
            "%s event %s: item %s names payout %s but does not match it",
            event.provider,
            event.event_id,
            event.object_id,
            payout.id,
        )
        return None
    return payout


async def _payout_of(session: AsyncSession, event: ProviderEvent) -> WorkerPayout | None:
    """The payout an event is about, locked: by the transfer / item id we store, else by
    our own payout id on the item."""
    assert event.object_id is not None
    found = await payouts.by_transfer_id(session, event.object_id)
    if found is not None:
        return await payouts.lock(session, found.id)
    return await _payout_by_reference(session, event)


async def _payout_delayed(
    session: AsyncSession, payout: WorkerPayout, event: ProviderEvent
) -> None:
    """Still on its way (PayPal UNCLAIMED / HELD): keep the ids (to poll it), say so once."""
    payout.paypal_payout_id = payout.paypal_payout_id or event.object_id
    payout.paypal_batch_id = payout.paypal_batch_id or event.transfer_batch_id
    if payout.status != PayoutStatus.PROCESSING:
        return
    status = event.delayed_reason or "delayed"
    kind = f"payout_{status}"
    exists = await session.scalar(
        select(Alert.id)
        .where(Alert.kind == kind, Alert.object_type == "payout", Alert.object_id == payout.id)
        .limit(1)
    )
    if exists is not None:
        return
    await audit_payout(
        session,
        payout.id,
        f"payout.{status}",
        actor_kind=event.provider,
        after={"status": payout.status, event.provider: event.failure_message},
    )
    await alert(
        session,
        kind,
        f"Payout #{payout.id} to {payout.destination} is {status} at {event.provider}"
        + (f" ({event.failure_message})" if event.failure_message else "")
        + ": it stays processing; the provider returns it (and we give the amount back) if "
        "it is never claimed",
        "payout",
        payout.id,
    )


async def payout_event(runtime: Runtime, event: ProviderEvent) -> None:
    """PAYOUT_SUCCEEDED, PAYOUT_FAILED, PAYOUT_DELAYED."""
    assert event.object_id is not None
    async with transaction(runtime.sessions) as session:
        payout = await _payout_of(session, event)
        if payout is None:
            unknown(event)
            return
        if event.kind == EventKind.PAYOUT_DELAYED:
            await _payout_delayed(session, payout, event)
            return
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
            event.transfer_batch_id,
            event.failure_message,
        )
        await apply_transfer(session, payout, transfer, actor_kind=event.provider)


async def account_event(runtime: Runtime, event: ProviderEvent) -> None:
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
            unknown(event)
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
