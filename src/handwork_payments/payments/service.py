"""Payments: creating holds at a provider, confirming them, releasing them.

The shape of every command that calls a provider (ARCHITECTURE: never hold a row lock
across a network call):
  1. a transaction locks the payment, checks the transition and marks the provider
     operation in flight (`provider_operation`), then commits;
  2. the provider is called outside any transaction, with an idempotency key made from
     our ids, so calling again can never act twice;
  3. a second transaction locks the payment again, re-checks, and applies the outcome
     with its journal entry.
A call that never answers leaves the marker; the next attempt (a retry of the command,
or the resolver job) makes the same call with the same key and applies what it gets.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.kit import money
from handwork_payments.kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PaymentDeclined,
    ProviderUnavailable,
    RiskBlocked,
)
from handwork_payments.kit.rows import row_or_none
from handwork_payments.models import (
    Booking,
    BookingStatus,
    HoldKind,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ReviewObject,
    Role,
    User,
)
from handwork_payments.payments import milestones, repository
from handwork_payments.payments.escrow import (
    abandon_operation,
    apply_capture,
    apply_failure,
    apply_hold,
    apply_milestone_release,
    apply_release,
    audit_payment,
    begin_operation,
    end_operation,
    ensure_no_operation,
    hold_ref,
    locked,
    operation_of,
    set_provider_id,
    snapshot,
)
from handwork_payments.payments.operations import CAPTURE
from handwork_payments.providers.base import (
    HoldRef,
    HoldState,
    NewHold,
    PaymentDeclinedError,
    ProviderError,
    ProviderHold,
    ProviderUnavailableError,
)
from handwork_payments.providers.currencies import CurrencyRules, NotAccepted
from handwork_payments.risk import reviews
from handwork_payments.risk import service as risk
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# Provider codes for an idempotency key reused with other parameters (Stripe, simulator).
IDEMPOTENCY_CONFLICTS = {"idempotency_error", "idempotency_key_in_use"}


# --- commands ---------------------------------------------------------------------------


async def create_hold(
    runtime: Runtime,
    user: User,
    *,
    method: PaymentMethod,
    booking_id: int,
    amount: int,
    currency: str,
    payment_method: str | None = None,
    return_url: str | None = None,
    cancel_url: str | None = None,
    stablecoin: bool = False,
    metadata: dict[str, Any] | None = None,
    customer: str | None = None,
) -> tuple[Payment, ProviderHold]:
    """A pending payment for the booking and its hold at the provider. Asking again while
    the payment is pending answers the same payment and hold (the provider call repeats
    with the same idempotency key), so a lost answer is safe to retry. With `customer`,
    `payment_method` is that customer's saved method, charged off-session (recurring)."""
    try:
        async with transaction(runtime.sessions) as session:
            payment = await _pending_payment(
                session,
                runtime,
                user,
                method=method,
                booking_id=booking_id,
                amount=amount,
                currency=currency,
                stablecoin=stablecoin,
                metadata=metadata,
            )
    except RiskBlocked as exc:
        await risk.record_block(runtime.sessions, user.id, booking_id, exc)
        raise
    provider = runtime.providers.for_method(method)
    existing = payment.stripe_payment_id or payment.paypal_payment_id
    try:
        if existing:
            # Created before (the answer reached us): report it rather than create again.
            hold = await provider.get_hold(HoldRef(existing))
            return payment, hold
        hold = await provider.create_hold(
            NewHold(
                payment_id=payment.id,
                booking_id=booking_id,
                amount=amount,
                currency=currency,
                payment_method=payment_method,
                return_url=return_url,
                cancel_url=cancel_url,
                stablecoin=stablecoin,
                customer=customer,
            ),
            idempotency_key=f"payment-{payment.id}-hold",
        )
    except PaymentDeclinedError as exc:
        await _fail(runtime, payment.id, declined_detail(exc), user.id)
        raise PaymentDeclined(declined_detail(exc)) from exc
    except ProviderError as exc:
        if exc.code in IDEMPOTENCY_CONFLICTS:
            # A retry that differs from the first attempt: the first one stands.
            raise Conflict(
                f"Payment #{payment.id} is being created with other details; retry the "
                "original request or cancel the booking"
            ) from exc
        await _fail(runtime, payment.id, exc.message, user.id)
        raise BadRequest(f"{provider.name} refused the payment: {exc.message}") from exc
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(
            f"{provider.name} did not answer; retry the request to resume payment #{payment.id}"
        ) from exc
    payment = await _apply_hold_state(runtime, payment.id, hold, user.id)
    return payment, hold


async def _check_milestones(session: AsyncSession, rules: CurrencyRules, booking: Booking) -> None:
    """Each milestone may be refunded on its own, so the provider must take its amount
    too (Stripe's three-decimal currencies end in 0): refused now, not at that refund."""
    for milestone in await milestones.of_booking(session, booking):
        problem = rules.amount_problem(milestone.amount, booking.currency)
        if problem is not None:
            raise NotAccepted(f"Milestone '{milestone.title}': {problem}")


async def _pending_payment(
    session: AsyncSession,
    runtime: Runtime,
    user: User,
    *,
    method: PaymentMethod,
    booking_id: int,
    amount: int,
    currency: str,
    stablecoin: bool,
    metadata: dict[str, Any] | None,
) -> Payment:
    """Step 1 of create_hold, under the booking's lock: the booking's pending payment by
    `method`, created on the first request and found again on a retry."""
    booking, payment = await repository.lock_booking_and_live_payment(session, booking_id)
    if booking is None or booking.client_id != user.id:
        raise NotFound("Booking not found")
    if amount != booking.amount or currency != booking.currency:
        raise BadRequest(
            "The amount must equal the booking's: "
            f"{money.format_amount(booking.amount, booking.currency)} {booking.currency}"
        )
    if payment is not None and (
        payment.status != PaymentStatus.PENDING
        or payment.payment_method != method
        or payment.stablecoin != stablecoin
    ):
        raise Conflict(f"Booking #{booking.id} already has a {payment.status} payment")
    if booking.status != BookingStatus.PENDING_PAYMENT:
        raise Conflict(f"A {booking.status} booking cannot be paid")
    if payment is not None:
        return payment
    # What the provider would refuse is refused before a payment exists (a 400 naming its
    # rule), not left behind as a failed one.
    rules = runtime.providers.rules(method)
    rules.check_payment(amount, currency)
    if booking.milestone_count:
        await _check_milestones(session, rules, booking)
    fee = money.platform_fee(amount, runtime.settings.platform_fee_percentage)
    payment = Payment(
        booking_id=booking.id,
        amount=amount,
        platform_fee=fee,
        worker_amount=amount - fee,
        refunded_amount=0,
        refunded_fee=0,
        captured_amount=0,
        currency=currency,
        payment_method=method,
        stablecoin=stablecoin,
        status=PaymentStatus.PENDING,
        payment_metadata=runtime.cipher.encrypt(metadata),
    )
    await risk.evaluate_payment(session, runtime.settings, user, booking, payment)
    session.add(payment)
    await session.flush()
    await audit_payment(session, payment, "payment.created", actor_id=user.id)
    return payment


async def confirm_hold(
    runtime: Runtime,
    user: User,
    *,
    method: PaymentMethod,
    provider_payment_id: str,
    booking_id: int,
    payer_id: str | None = None,
) -> Payment:
    """Stripe's confirm / PayPal's execute: ask the provider whether the payer has done
    their part and hold the payment if so. Confirming a held payment again answers it."""
    async with runtime.sessions() as session:
        payment = await repository.by_provider_id(session, method, provider_payment_id)
        booking = await session.get(Booking, booking_id)
        if payment is None or booking is None or payment.booking_id != booking.id:
            raise NotFound("Payment not found")
        if booking.client_id != user.id:
            raise NotFound("Payment not found")
    if payment.status == PaymentStatus.FAILED:
        raise PaymentDeclined(payment.failure_reason or "The payment failed")
    if payment.status != PaymentStatus.PENDING:
        return payment
    provider = runtime.providers.for_method(method)
    try:
        hold = await provider.confirm_hold(
            provider_payment_id=provider_payment_id,
            payer_id=payer_id,
            idempotency_key=f"payment-{payment.id}-confirm",
        )
    except PaymentDeclinedError as exc:
        await _fail(runtime, payment.id, declined_detail(exc), user.id)
        raise PaymentDeclined(declined_detail(exc)) from exc
    except ProviderError as exc:
        raise BadRequest(f"{provider.name}: {exc.message}") from exc
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(f"{provider.name} did not answer; confirm again") from exc
    if payer_id:
        async with transaction(runtime.sessions) as session:
            locked_payment, _ = await locked(session, payment.id)
            locked_payment.payer_id = payer_id
    payment = await _apply_hold_state(runtime, payment.id, hold, user.id)
    if payment.status == PaymentStatus.FAILED:
        raise PaymentDeclined(payment.failure_reason or "The payment was declined")
    if hold.state == HoldState.REQUIRES_ACTION and payment.stablecoin:
        raise Conflict(
            "The payer has not completed the stablecoin payment yet (crypto.stripe.com, or "
            "it is settling on-chain); it is held once Stripe says it succeeded"
        )
    if hold.state == HoldState.REQUIRES_ACTION:
        raise PaymentDeclined(
            "authentication_required: the card needs 3-D Secure; complete it with the "
            "client_secret (Stripe.js handleNextAction) and confirm again"
        )
    if hold.state in (HoldState.REQUIRES_PAYMENT_METHOD, HoldState.REQUIRES_APPROVAL):
        raise Conflict("The payer has not confirmed a payment method yet")
    return payment


async def _apply_hold_state(
    runtime: Runtime, payment_id: int, hold: ProviderHold, actor_id: int | None
) -> Payment:
    async with transaction(runtime.sessions) as session:
        payment, booking = await locked(session, payment_id)
        set_provider_id(payment, hold.provider_payment_id)
        if hold.state in (HoldState.AUTHORIZED, HoldState.CAPTURED):
            await apply_hold(session, payment, booking, hold, actor_id=actor_id)
        elif hold.state in (HoldState.FAILED, HoldState.CANCELED):
            await apply_failure(
                session, payment, hold.failure_message or f"hold {hold.state}", actor_id=actor_id
            )
    if payment.status == PaymentStatus.FAILED and hold.state == HoldState.FAILED:
        await void_quietly(runtime, payment.id)
    return payment


async def _fail(runtime: Runtime, payment_id: int, reason: str, actor_id: int | None) -> None:
    async with transaction(runtime.sessions) as session:
        payment, _ = await locked(session, payment_id)
        await apply_failure(session, payment, reason, actor_id=actor_id)
    await void_quietly(runtime, payment_id)


def declined_detail(exc: PaymentDeclinedError) -> str:
    """A 402's detail: the payer's message and the decline code a front end acts on."""
    return f"{exc.message} (decline code: {exc.code})" if exc.code else exc.message


async def void_failed_hold(runtime: Runtime, payment_id: int) -> None:
    """Cancel a failed Stripe payment's PaymentIntent (key `payment-{id}-void`). Stripe.js
    lets a payer retry a declined intent with another card: left open, the intent could
    authorise money for a payment we count as failed. Once canceled it cannot be. Raises
    ProviderUnavailableError when Stripe does not answer (call again: same key)."""
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
    if (
        payment is None
        or payment.status != PaymentStatus.FAILED
        or payment.payment_method != PaymentMethod.STRIPE
        or not payment.stripe_payment_id
    ):
        return
    try:
        await runtime.providers.stripe.cancel(
            ref=hold_ref(payment), idempotency_key=f"payment-{payment.id}-void"
        )
    except ProviderError as exc:
        # Captured (it cannot be canceled any more): money taken for a failed payment.
        async with transaction(runtime.sessions) as session:
            await alert(
                session,
                "void_failed",
                f"Payment #{payment.id} failed, but its intent {payment.stripe_payment_id} "
                f"could not be canceled: {exc.message}",
                "payment",
                payment.id,
            )


async def void_quietly(runtime: Runtime, payment_id: int) -> None:
    """void_failed_hold on a request path: no answer is logged, not turned into an error
    (the payment failed either way; the intent's `amount_capturable_updated` webhook voids
    it again should the payer complete it meanwhile)."""
    try:
        await void_failed_hold(runtime, payment_id)
    except ProviderUnavailableError as exc:
        log.warning("payment %s failed; its intent was not canceled yet: %s", payment_id, exc)


async def release(
    runtime: Runtime,
    payment_id: int,
    *,
    actor: User | None,
    from_disputed: bool = False,
    milestone_id: int | None = None,
) -> Payment:
    """Release what is held to the worker (or, with `milestone_id`, that milestone's part):
    capture the authorisation (the amount still held, after partial refunds) and post the
    release. A milestone released from an authorisation captures all of it first; the rest
    stays in escrow. `actor` None is the system (auto-release); a user must be the
    booking's client unless `from_disputed` (an admin's dispute resolution)."""
    actor_id = actor.id if actor else None
    async with transaction(runtime.sessions) as session:
        payment, booking = await locked(session, payment_id)
        if actor is not None and not from_disputed and booking.client_id != actor.id:
            if actor.id == booking.worker_id or actor.role == Role.ADMIN:
                raise Forbidden("Only the booking's client can release its payment")
            raise NotFound("Payment not found")
        expected = PaymentStatus.DISPUTED if from_disputed else PaymentStatus.HELD
        if payment.status != expected:
            raise Conflict(f"A {payment.status} payment cannot be released")
        await reviews.ensure_no_open_review(session, ReviewObject.PAYMENT, payment.id)
        if milestone_id is not None:
            # Checked before any capture: an unknown or released milestone moves nothing.
            milestones.pending_one(await milestones.of_booking(session, booking), milestone_id)
        if operation_of(payment) == CAPTURE:
            pass  # a capture that never answered: make the same call again below
        elif payment.hold_kind == HoldKind.CAPTURED:
            # A refund's provider call in flight: the release waits for it (a 409), or
            # it would clear that call's marker and the refund would never be booked.
            ensure_no_operation(payment)
            if milestone_id is None:
                await apply_release(session, payment, booking, actor_id=actor_id)
            else:
                await apply_milestone_release(
                    session, payment, booking, milestone_id, actor_id=actor_id
                )
            return payment
        else:
            begin_operation(payment, CAPTURE)
    payment = await finish_capture(
        runtime, payment_id, actor_id=actor_id, release=milestone_id is None
    )
    if (
        payment.status == expected
        and payment.hold_kind == HoldKind.CAPTURED
        and payment.provider_operation is None
    ):
        # Captured without the release (a milestone's; or another path applied the
        # capture first: the hold guard or the resolver): release now, checked again.
        return await release(
            runtime,
            payment_id,
            actor=actor,
            from_disputed=from_disputed,
            milestone_id=milestone_id,
        )
    return payment


async def finish_capture(
    runtime: Runtime,
    payment_id: int,
    *,
    actor_id: int | None,
    release: bool = True,
    actor_kind: str | None = None,
) -> Payment:
    """Steps 2 and 3 of a capture (marker "capture", key `payment-{id}-capture`): capture
    at the provider, then apply it; with `release`, post the release in the same
    transaction. Without (the hold guard, the resolver), the money stays in escrow, now
    held on the platform's provider balance: the escrow account does not change."""
    # An autocommit read (no BEGIN and ROLLBACK round trips): the marker decides.
    async with runtime.read_sessions() as session:
        payment = await row_or_none(session, Payment, payment_id)
        assert payment is not None
    if operation_of(payment) != CAPTURE:
        return payment  # finished already (by a retry, the resolver, another process)
    provider = runtime.providers.for_method(payment.payment_method)
    amount = payment.amount - payment.refunded_amount
    try:
        capture = await provider.capture(
            ref=hold_ref(payment),
            amount=amount,
            currency=payment.currency,
            idempotency_key=f"payment-{payment.id}-capture",
        )
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(
            f"{provider.name} did not answer the capture; release again to resume"
        ) from exc
    except ProviderError as exc:
        async with transaction(runtime.sessions) as session:
            payment, _ = await locked(session, payment_id)
            await abandon_operation(
                session,
                payment,
                "capture_failed",
                f"Capture of payment #{payment.id} failed: {exc.message}",
            )
        raise Conflict(f"{provider.name} refused the capture: {exc.message}") from exc
    if (problem := capture.mismatch(amount, payment.currency)) is not None:
        await _refuse_capture(runtime, payment_id, capture.capture_id, problem)
        raise Conflict(
            f"{provider.name} answered the capture with another one ({problem}); an admin must look"
        )
    async with transaction(runtime.sessions) as session:
        payment, booking = await locked(session, payment_id)
        if operation_of(payment) != CAPTURE:
            return payment  # another process applied this capture first
        before = snapshot(payment)
        await apply_capture(session, payment, capture.capture_id, capture.amount, capture.fee)
        if release:
            await apply_release(session, payment, booking, actor_id=actor_id, actor_kind=actor_kind)
        else:
            end_operation(payment)
            await audit_payment(
                session,
                payment,
                "payment.captured",
                actor_id=actor_id,
                actor_kind=actor_kind,
                before=before,
            )
    return payment


async def _refuse_capture(runtime: Runtime, payment_id: int, capture_id: str, problem: str) -> None:
    """A capture found under our key that is not ours to apply (another installation's, or
    ours from before a database was restored): nothing is booked, the payment stays held
    and an admin is told."""
    async with transaction(runtime.sessions) as session:
        payment, _ = await locked(session, payment_id)
        if operation_of(payment) == CAPTURE:
            end_operation(payment)
        await alert(
            session,
            "capture_mismatch",
            f"Capture {capture_id} answered for payment #{payment.id} is not it ({problem}): "
            "not applied; check the payment at the provider",
            "payment",
            payment.id,
        )


def auto_release_deadline(runtime: Runtime, completed_at: datetime) -> datetime | None:
    hours = runtime.settings.auto_release_hours
    if hours <= 0:
        return None
    return completed_at + timedelta(seconds=float(hours * 3600))
