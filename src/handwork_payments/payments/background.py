"""What the periodic jobs do to payments: the hold guard, the resolver of provider calls
left in flight, and the sweep of overdue automatic releases.

Each one takes `now` from its caller (the task passes the clock, tests pass the moment
they need) and acts through the same three-step provider-operation pattern as the
commands (payments.service): lock, re-check and mark; call the provider with the key made
from our ids; lock, re-check and apply. So a job that runs twice, overlaps a user's command
or dies half-way never acts twice: the marker makes the others wait, and the key makes the
provider answer a repeated call with its first outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record
from handwork_payments.connect import reversals
from handwork_payments.db import transaction
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import DomainError
from handwork_payments.models import HoldKind, Payment, PaymentMethod, PaymentStatus, ReviewObject
from handwork_payments.payments import service
from handwork_payments.payments.escrow import (
    abandon_operation,
    audit_payment,
    begin_operation,
    end_operation,
    hold_ref,
    locked,
    operation_of,
    snapshot,
)
from handwork_payments.payments.operations import CAPTURE, REAUTHORIZE, Operation
from handwork_payments.payments.refunds import finish_refund
from handwork_payments.providers.base import (
    ProviderError,
    ProviderUnavailableError,
    ReauthorizingProvider,
)
from handwork_payments.risk import reviews
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# PayPal honours an authorisation's funds for 3 days; it may be renewed once after that.
PAYPAL_HONOUR_PERIOD = timedelta(days=3)
# How long an authorisation lasts when the provider did not say (no capture_by): counted
# from when we held it, which is after the provider authorised it.
AUTHORIZATION_WINDOW = {
    PaymentMethod.STRIPE: timedelta(days=7),
    PaymentMethod.PAYPAL: timedelta(days=29),
}
# Objects looked at per run: the next run takes the rest.
BATCH_LIMIT = 100
ESCROW = (PaymentStatus.HELD, PaymentStatus.DISPUTED)


@dataclass
class Report:
    """What a run did, by payment id (for logs, the CLI and tests)."""

    captured: list[int] = field(default_factory=list)
    reauthorized: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    not_done: dict[int, str] = field(default_factory=dict)
    reversals: int = 0  # transfer reversals resumed

    def __bool__(self) -> bool:
        return bool(
            self.captured
            or self.reauthorized
            or self.resumed
            or self.released
            or self.not_done
            or self.reversals
        )


# --- the hold guard ---------------------------------------------------------------------


def lapses_at(payment: Payment) -> datetime | None:
    """When the authorisation behind a hold lapses: the provider's word, else our count."""
    if payment.capture_by is not None:
        return payment.capture_by
    if payment.held_at is None:
        return None
    return payment.held_at + AUTHORIZATION_WINDOW[PaymentMethod(payment.payment_method)]


def capture_due(runtime: Runtime, payment: Payment, now: datetime) -> bool:
    """An authorisation the guard must capture now: its lapse is within the margin."""
    margin = timedelta(hours=runtime.settings.capture_margin_hours)
    lapse = lapses_at(payment)
    return (
        payment.status in ESCROW
        and payment.hold_kind == HoldKind.AUTHORIZED
        and lapse is not None
        and lapse - margin <= now
    )


def reauthorization_due(runtime: Runtime, payment: Payment, now: datetime) -> bool:
    """A PayPal authorisation past its honour period, never renewed, not yet due for
    capture, at a provider that can renew it."""
    provider = runtime.providers.for_method(payment.payment_method)
    return (
        payment.payment_method == PaymentMethod.PAYPAL
        and isinstance(provider, ReauthorizingProvider)
        and payment.status in ESCROW
        and payment.hold_kind == HoldKind.AUTHORIZED
        and payment.reauthorized_at is None
        and payment.held_at is not None
        and payment.held_at + PAYPAL_HONOUR_PERIOD <= now
        and not capture_due(runtime, payment, now)
    )


async def guard_holds(runtime: Runtime, *, now: datetime, limit: int = BATCH_LIMIT) -> Report:
    """Capture every authorisation about to lapse (capture_by minus CAPTURE_MARGIN_HOURS
    has passed) and keep the money in escrow, on the platform: the payment stays held (or
    disputed) with hold_kind `captured`, never released. Renew PayPal authorisations once
    their 3-day honour period is over. Every step is in the audit log."""
    margin = timedelta(hours=runtime.settings.capture_margin_hours)
    report = Report()
    async with runtime.sessions() as session:
        due = await _lapsing(session, before=now + margin, limit=limit)
        honour_over = await _honour_period_over(session, now=now, limit=limit)
    for payment_id in due:
        await _guarded(report, payment_id, _capture(runtime, payment_id, now, report))
    for payment_id in honour_over:
        await _guarded(report, payment_id, _reauthorize(runtime, payment_id, now, report))
    if report:
        log.info(
            "hold guard: captured %s, reauthorised %s, not done %s",
            report.captured,
            report.reauthorized,
            report.not_done,
            extra={
                "event": "hold_guard",
                "captured": report.captured,
                "reauthorized": report.reauthorized,
                "not_done": report.not_done,
            },
        )
    return report


async def _lapsing(session: AsyncSession, *, before: datetime, limit: int) -> list[int]:
    """Authorisations that lapse before `before` and no provider call is busy with."""
    due = list(
        await session.scalars(
            select(Payment.id)
            .where(
                Payment.hold_kind == HoldKind.AUTHORIZED,
                Payment.status.in_(ESCROW),
                Payment.provider_operation.is_(None),
                Payment.capture_by <= before,
            )
            .order_by(Payment.capture_by, Payment.id)
            .limit(limit)
        )
    )
    for method, window in AUTHORIZATION_WINDOW.items():
        # Holds whose provider gave no deadline: counted from when we held them.
        due += await session.scalars(
            select(Payment.id)
            .where(
                Payment.hold_kind == HoldKind.AUTHORIZED,
                Payment.status.in_(ESCROW),
                Payment.provider_operation.is_(None),
                Payment.capture_by.is_(None),
                Payment.payment_method == method,
                Payment.held_at <= before - window,
            )
            .order_by(Payment.held_at, Payment.id)
            .limit(limit)
        )
    return due


async def _honour_period_over(session: AsyncSession, *, now: datetime, limit: int) -> list[int]:
    """PayPal authorisations past their 3-day honour period, never renewed yet."""
    return list(
        await session.scalars(
            select(Payment.id)
            .where(
                Payment.payment_method == PaymentMethod.PAYPAL,
                Payment.hold_kind == HoldKind.AUTHORIZED,
                Payment.status.in_(ESCROW),
                Payment.provider_operation.is_(None),
                Payment.reauthorized_at.is_(None),
                Payment.held_at <= now - PAYPAL_HONOUR_PERIOD,
            )
            .order_by(Payment.held_at, Payment.id)
            .limit(limit)
        )
    )


async def _guarded(report: Report, payment_id: int, step: Awaitable[None]) -> None:
    """Run one payment's step; one payment's trouble never stops the others."""
    try:
        await step
    except (DomainError, ProviderUnavailableError) as exc:
        detail = getattr(exc, "detail", None) or str(exc)
        report.not_done[payment_id] = detail
        log.warning("payment %s: %s", payment_id, detail)


async def _capture(runtime: Runtime, payment_id: int, now: datetime, report: Report) -> None:
    async with transaction(runtime.sessions) as session:
        payment, _ = await locked(session, payment_id)
        if payment.provider_operation is not None or not capture_due(runtime, payment, now):
            return  # released, refunded or being worked on since the query
        await _begin_capture(
            session,
            payment,
            {
                "capture_by": payment.capture_by.isoformat() if payment.capture_by else None,
                "margin_hours": runtime.settings.capture_margin_hours,
                "now": now.isoformat(),
            },
        )
    await _finish_capture(runtime, payment_id, report)


async def _reauthorize(runtime: Runtime, payment_id: int, now: datetime, report: Report) -> None:
    async with transaction(runtime.sessions) as session:
        payment, _ = await locked(session, payment_id)
        if payment.provider_operation is not None or not reauthorization_due(runtime, payment, now):
            return
        begin_operation(payment, REAUTHORIZE)
    if await finish_reauthorization(runtime, payment_id):
        report.reauthorized.append(payment_id)
    else:
        # PayPal would not renew it: the funds are no longer guaranteed. Capture what it
        # still gives while the authorisation stands rather than wait for its lapse.
        await _capture_now(runtime, payment_id, report)


async def _capture_now(runtime: Runtime, payment_id: int, report: Report) -> None:
    async with transaction(runtime.sessions) as session:
        payment, _ = await locked(session, payment_id)
        if (
            payment.provider_operation is not None
            or payment.status not in ESCROW
            or payment.hold_kind != HoldKind.AUTHORIZED
        ):
            return
        await _begin_capture(session, payment, {"reason": "reauthorisation refused"})
    await _finish_capture(runtime, payment_id, report)


async def _begin_capture(session: AsyncSession, payment: Payment, why: dict[str, Any]) -> None:
    """Step 1 of the guard's capture, under the payment's lock: the marker and the audit
    row saying why the guard captures."""
    begin_operation(payment, CAPTURE)
    await record(
        session,
        actor_id=None,
        actor_kind="system",
        action="hold_guard.capture",
        object_type="payment",
        object_id=payment.id,
        before=snapshot(payment),
        after=why,
    )


async def _finish_capture(runtime: Runtime, payment_id: int, report: Report) -> None:
    captured = await service.finish_capture(
        runtime, payment_id, actor_id=None, release=False, actor_kind="system"
    )
    if captured.hold_kind == HoldKind.CAPTURED:
        report.captured.append(payment_id)


async def finish_reauthorization(runtime: Runtime, payment_id: int) -> bool:
    """Steps 2 and 3 of a reauthorisation (marker "reauthorize", key
    `payment-{id}-reauthorize`): True when renewed, False when the provider refused (the
    marker is cleared and an alert raised). Raises ProviderUnavailableError with the
    marker kept when the answer is lost: the resolver asks again under the same key."""
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
    if operation_of(payment) != REAUTHORIZE:
        return payment.reauthorized_at is not None
    provider = runtime.providers.for_method(payment.payment_method)
    assert isinstance(provider, ReauthorizingProvider)
    try:
        hold = await provider.reauthorize(
            ref=hold_ref(payment),
            amount=payment.amount - payment.refunded_amount,
            currency=payment.currency,
            idempotency_key=f"payment-{payment.id}-reauthorize",
        )
    except ProviderError as exc:
        async with transaction(runtime.sessions) as session:
            payment, _ = await locked(session, payment_id)
            if operation_of(payment) == REAUTHORIZE:
                await abandon_operation(
                    session,
                    payment,
                    "reauthorization_failed",
                    f"PayPal would not reauthorise payment #{payment.id}: {exc.message}",
                )
        return False
    async with transaction(runtime.sessions) as session:
        payment, _ = await locked(session, payment_id)
        if operation_of(payment) != REAUTHORIZE:
            return payment.reauthorized_at is not None
        before = snapshot(payment)
        payment.provider_authorization_id = hold.authorization_id
        # The renewal keeps the original's 29-day limit; never move the deadline later.
        if hold.capture_by is not None and (
            payment.capture_by is None or hold.capture_by < payment.capture_by
        ):
            payment.capture_by = hold.capture_by
        payment.reauthorized_at = now()
        end_operation(payment)
        await audit_payment(
            session,
            payment,
            "hold_guard.reauthorized",
            actor_id=None,
            actor_kind="system",
            before=before,
            authorization_id=hold.authorization_id,
        )
    return True


# --- the resolver -------------------------------------------------------------------------


async def resolve_operations(
    runtime: Runtime, *, now: datetime, limit: int = BATCH_LIMIT
) -> Report:
    """Resume every provider call left in flight for longer than
    PROVIDER_OPERATION_STALE_SECONDS (a timeout whose caller gave up, a process that died)
    with the same idempotency key: the provider answers with the first call's outcome, or
    makes the call now if the first never reached it. Never a new, blind call.

    A capture left by a release is finished without the release: the resolver settles the
    provider's side and leaves the user's decision to the user (or the automatic release)."""
    stale = now - timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    report = Report()
    async with runtime.sessions() as session:
        stuck = (
            await session.execute(
                select(Payment.id, Payment.provider_operation)
                .where(
                    Payment.provider_operation.is_not(None),
                    Payment.provider_operation_at <= stale,
                )
                .order_by(Payment.provider_operation_at, Payment.id)
                .limit(limit)
            )
        ).all()
    for payment_id, operation in stuck:
        assert operation is not None
        await _guarded(report, payment_id, _resume(runtime, payment_id, operation, report))
    if runtime.providers.offers(PaymentMethod.STRIPE):
        # Transfer reversals (Stripe Connect) whose answer was lost: again, same key.
        report.reversals = await reversals.resume_pending(runtime, before=stale)
    if report:
        log.warning(
            "resolver: resumed %s, not done %s",
            report.resumed,
            report.not_done,
            extra={"event": "resolver", "resumed": report.resumed, "not_done": report.not_done},
        )
    return report


async def _resume(runtime: Runtime, payment_id: int, operation: str, report: Report) -> None:
    async with transaction(runtime.sessions) as session:
        await record(
            session,
            actor_id=None,
            actor_kind="system",
            action="resolver.resume",
            object_type="payment",
            object_id=payment_id,
            after={"operation": operation},
        )
    parsed = Operation.parse(operation)
    assert parsed is not None
    if parsed == CAPTURE:
        await service.finish_capture(
            runtime, payment_id, actor_id=None, release=False, actor_kind="system"
        )
    elif parsed == REAUTHORIZE:
        await finish_reauthorization(runtime, payment_id)
    else:
        assert parsed.refund_id is not None
        await finish_refund(runtime, payment_id, parsed.refund_id, actor_id=None)
    report.resumed.append(payment_id)


async def release_overdue(runtime: Runtime, *, now: datetime, limit: int = BATCH_LIMIT) -> Report:
    """Release held payments whose automatic release is overdue by more than the stale
    delay: the safety net under the one job per booking (a job that failed for good, or
    was lost). `release` checks the state again under the lock."""
    late = now - timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    report = Report()
    async with runtime.sessions() as session:
        overdue = (
            await session.scalars(
                select(Payment.id)
                .where(
                    Payment.status == PaymentStatus.HELD,
                    Payment.auto_release_at <= late,
                    Payment.provider_operation.is_(None),
                    # Waiting for a risk review: left for the admin, not failed on.
                    ~reviews.reviewed(ReviewObject.PAYMENT, Payment.id),
                )
                .order_by(Payment.auto_release_at, Payment.id)
                .limit(limit)
            )
        ).all()
    for payment_id in overdue:
        await _guarded(report, payment_id, _release(runtime, payment_id, report))
    return report


async def _release(runtime: Runtime, payment_id: int, report: Report) -> None:
    payment = await service.release(runtime, payment_id, actor=None)
    if payment.status == PaymentStatus.RELEASED:
        report.released.append(payment_id)
