"""What Stripe's events do where Stripe differs from PayPal; holds, captures, payouts and
accounts go through the shared handlers (`webhooks.handlers`).

- REFUNDED (charge.refunded): Stripe reports the charge's running refunded total; what
  exceeds our own refunds was refunded outside our API and is recorded as a refund.
- DISPUTE_OPENED / DISPUTE_CLOSED (charge.dispute.*): chargebacks (disputes.chargebacks).
- TRANSFER_REVERSED (transfer.reversed): a Connect transfer to a worker reversed at Stripe:
  returned in full (the payout failed) or in part (recorded as an external reversal).
- SETUP_SUCCEEDED (setup_intent.succeeded): a payer saved a card for a recurring schedule,
  which is activated (recurring.service.refresh, which asks Stripe for the setup itself).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.connect import reversals
from handwork_payments.db import transaction
from handwork_payments.disputes.chargebacks import close_chargeback
from handwork_payments.disputes.losses import book_dispute_fee
from handwork_payments.models import (
    Booking,
    Payment,
    PaymentDispute,
    PaymentRefund,
    PayoutStatus,
    ReversalStatus,
)
from handwork_payments.payments.external_refunds import record_external_refund
from handwork_payments.payouts import repository as payouts
from handwork_payments.payouts.service import apply_transfer
from handwork_payments.providers.base import (
    ChargebackOutcome,
    EventKind,
    ProviderEvent,
    ProviderTransfer,
    TransferState,
)
from handwork_payments.recurring import repository as schedules
from handwork_payments.recurring import service as recurring
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks.handlers import (
    RetryLater,
    apply_dispute,
    apply_to_payment,
    unknown,
)


async def refunded_event(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None

    async def step(
        session: AsyncSession, payment: Payment, booking: Booking
    ) -> PaymentRefund | None:
        return await record_external_refund(
            session,
            payment,
            booking,
            provider=event.provider,
            provider_refunded=event.refunded_total or 0,
            event_id=event.event_id,
        )

    await apply_to_payment(runtime, event, step)


async def dispute_event(runtime: Runtime, event: ProviderEvent) -> None:
    async def settle(
        session: AsyncSession, payment: Payment, booking: Booking, dispute: PaymentDispute
    ) -> PaymentRefund | None:
        await book_dispute_fee(session, payment, dispute, event.dispute_fee)
        if event.kind != EventKind.DISPUTE_CLOSED:
            return None
        outcome = event.dispute_outcome or ChargebackOutcome.UNKNOWN
        return await close_chargeback(
            session,
            payment,
            booking,
            dispute,
            provider=event.provider,
            outcome=outcome,
            detail=event.dispute_detail or outcome,
            amount=event.amount,
        )

    await apply_dispute(runtime, event, settle)


async def transfer_reversed(runtime: Runtime, event: ProviderEvent) -> None:
    """A Connect transfer reversed at Stripe (the event comes for ours too). Reversed in
    full with no reversal of ours: the payout failed (returned), its amount goes back to
    the worker's available balance. Otherwise what exceeds the reversals we know of was
    reversed by someone else, and is recorded as such."""
    assert event.object_id is not None
    async with transaction(runtime.sessions) as session:
        found = await payouts.by_transfer_id(session, event.object_id)
        if found is None:
            unknown(event)
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
        if event.reversed_in_full and not any(r.status == ReversalStatus.SUCCEEDED for r in known):
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
                session,
                payout,
                amount_reversed=event.reversed_amount or 0,
                actor_kind=event.provider,
            )


async def setup_succeeded(runtime: Runtime, event: ProviderEvent) -> None:
    assert event.object_id is not None
    async with runtime.sessions() as session:
        schedule = await schedules.find_by_setup(session, event.object_id)
    if schedule is None:
        unknown(event)
        return
    await recurring.refresh(runtime, schedule)
