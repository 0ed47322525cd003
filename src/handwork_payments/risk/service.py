"""Risk decisions: the rules run on a payment before its hold (block, review or allow),
again when the provider holds it (its own verdict, the card), and on every payout request.

RISK_MODE `enforce` acts on the outcome: a block is a 402 with nothing held, a review keeps
the money still until an admin decides (risk/reviews.py). `observe` runs the rules and
records their verdict on the payment (and in the audit log for payouts) but holds nothing
back, so demos and test cards keep flowing; `off` runs nothing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record
from handwork_payments.db import Sessions, transaction
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import RiskBlocked
from handwork_payments.models import (
    Booking,
    Payment,
    ReviewObject,
    RiskLevel,
    SignalKind,
    User,
    WorkerPayout,
)
from handwork_payments.providers.base import ProviderHold
from handwork_payments.risk import repository, reviews, rules, signals
from handwork_payments.risk.rules import Decision, Outcome
from handwork_payments.settings import Settings

ENFORCE, OBSERVE, OFF = "enforce", "observe", "off"


async def evaluate_payment(
    session: AsyncSession, settings: Settings, client: User, booking: Booking, payment: Payment
) -> None:
    """Before the hold: run the payment rules and record the verdict on the (new, not yet
    flushed) payment. Enforced, a block raises RiskBlocked and nothing is written."""
    mode = settings.risk_mode_effective
    if mode == OFF:
        return
    at = now()
    history = await repository.client_history(
        session, client.id, booking.worker_id, payment.currency, at
    )
    facts = rules.PaymentFacts(
        amount=payment.amount,
        client_registered_at=client.created_at,
        worker_registered_at=history.worker_registered_at,
        now=at,
        payments_last_hour=history.payments_last_hour,
        payments_last_day=history.payments_last_day,
        declines_last_day=history.declines_last_day,
        largest_earlier=history.largest,
        shared_signals=history.shared,
    )
    decision = rules.decide([rule(facts, settings) for rule in rules.PAYMENT_RULES])
    if mode == ENFORCE and decision.outcome == Outcome.BLOCK:
        raise RiskBlocked(decision.reasons)
    payment.risk_level = decision.level
    payment.risk_reasons = decision.reasons
    payment.risk_enforced = mode == ENFORCE


async def record_block(
    sessions: Sessions, client_id: int, booking_id: int, blocked: RiskBlocked
) -> None:
    """The audit entry of a blocked payment, in its own transaction: the payment's own
    was rolled back, nothing of it exists."""
    async with transaction(sessions) as session:
        await record(
            session,
            actor_id=client_id,
            action="payment.risk_blocked",
            object_type="booking",
            object_id=booking_id,
            after={"risk_level": RiskLevel.HIGHEST, "reasons": blocked.reasons},
        )


async def after_hold(
    session: AsyncSession, payment: Payment, booking: Booking, hold: ProviderHold
) -> None:
    """At the hold (inside its transaction, under the payment's lock): the provider's
    verdict and the card join the earlier verdict; enforced, a payment that is not normal
    is held under review."""
    if payment.risk_level is None:
        return  # RISK_MODE off when it was created
    card_on_other_client = False
    if hold.card_fingerprint:
        card = signals.digest(signals.CARD_KEY, SignalKind.CARD, hold.card_fingerprint)
        card_on_other_client = await signals.note_card(
            session, card, booking.client_id, booking.worker_id
        )
    facts = rules.HoldFacts(
        provider_risk=hold.risk_level,
        card_on_other_client=card_on_other_client,
        seller_protection=hold.seller_protection,
    )
    earlier = Decision(
        Outcome.REVIEW if payment.risk_level != RiskLevel.NORMAL else Outcome.ALLOW,
        RiskLevel(payment.risk_level),
        list(payment.risk_reasons),
    )
    decision = rules.decide([rule(facts) for rule in rules.HOLD_RULES], earlier)
    payment.risk_level = decision.level
    payment.risk_reasons = decision.reasons
    if payment.risk_enforced and decision.outcome != Outcome.ALLOW:
        await reviews.open_review(
            session, ReviewObject.PAYMENT, payment.id, decision.level, decision.reasons
        )


async def evaluate_payout(
    session: AsyncSession, settings: Settings, worker: User, payout: WorkerPayout
) -> None:
    """On a payout request, in its transaction: enforced, a payout the rules flag waits for
    a review before it can be processed; observed, the verdict goes to the audit log."""
    mode = settings.risk_mode_effective
    if mode == OFF:
        return
    at = now()
    earlier, last_day, shared = await repository.worker_payouts(session, worker.id, at)
    facts = rules.PayoutFacts(
        worker_registered_at=worker.created_at,
        now=at,
        # The payout itself is flushed already: not counted.
        earlier_payouts=earlier - 1,
        payouts_last_day=last_day - 1,
        shared_with_client=shared,
    )
    decision = rules.decide([rule(facts, settings) for rule in rules.PAYOUT_RULES])
    if decision.outcome == Outcome.ALLOW:
        return
    if mode == ENFORCE:
        await reviews.open_review(
            session, ReviewObject.PAYOUT, payout.id, decision.level, decision.reasons
        )
        return
    await record(
        session,
        actor_id=None,
        actor_kind="system",
        action="payout.risk_observed",
        object_type="payout",
        object_id=payout.id,
        after={"risk_level": decision.level, "reasons": decision.reasons},
    )
