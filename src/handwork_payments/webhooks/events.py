"""What a verified provider event does to our objects. Every handler locks the object,
re-checks its state and applies only moves its state machine allows forward: a repeated,
late or out-of-order event changes nothing (a late "authorised" after release is a
no-op), and an event about an object we do not know is recorded and ignored."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.models import PaymentStatus, User
from handwork_payments.payments import repository as payments
from handwork_payments.payments.service import apply_failure, apply_hold, hold_ref, locked
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


def _capture_by(event: ProviderEvent) -> datetime | None:
    created = event.data.get("created")
    if event.provider == "stripe" and isinstance(created, int):
        return datetime.fromtimestamp(created, UTC) + timedelta(days=STRIPE_AUTHORIZATION_DAYS)
    expires = event.data.get("expiration_time")
    if isinstance(expires, str):
        return datetime.fromisoformat(expires.replace("Z", "+00:00"))
    return None


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
        found = await payments.by_provider_id(session, event.provider, event.object_id)
        if found is None:
            log.info(
                "%s event %s about unknown %s", event.provider, event.event_id, event.object_id
            )
            return
        payment, booking = await locked(session, found.id)
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
        else:
            reason = event.failure_message or event.event_type
            await apply_failure(session, payment, reason, actor_id=None, actor_kind=event.provider)


async def _payout_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    async with transaction(runtime.sessions) as session:
        found = await payouts.by_transfer_id(session, event.object_id)
        if found is None:
            log.info(
                "%s event %s about unknown transfer %s",
                event.provider,
                event.event_id,
                event.object_id,
            )
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
    async with transaction(runtime.sessions) as session:
        user = (
            await session.execute(
                select(User).where(User.stripe_account_id == event.object_id).with_for_update()
            )
        ).scalar_one_or_none()
        if user is None or event.payouts_enabled is None:
            return
        if user.stripe_payouts_enabled != event.payouts_enabled:
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


HANDLERS = {
    EventKind.HOLD_AUTHORIZED: _hold_event,
    EventKind.HOLD_FAILED: _hold_event,
    EventKind.HOLD_CANCELED: _hold_event,
    EventKind.PAYOUT_SUCCEEDED: _payout_event,
    EventKind.PAYOUT_FAILED: _payout_event,
    EventKind.ACCOUNT_UPDATED: _account_event,
}


async def apply(runtime: Runtime, event: ProviderEvent) -> None:
    handler = HANDLERS.get(event.kind)
    if handler is None or event.object_id is None:
        log.info(
            "%s event %s (%s) recorded, nothing to apply",
            event.provider,
            event.event_id,
            event.event_type,
        )
        return
    await handler(runtime, event)
