from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.http.deps import ClientUser, CurrentUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import PAYING, PROVIDER_ACTION, READ, READ_ONE
from handwork_payments.kit.errors import NotFound
from handwork_payments.kit.pagination import Page, PageDep, paginate
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import Booking, Payment, PaymentMethod, PaymentStatus, Role, User
from handwork_payments.payments import repository, service, stablecoin
from handwork_payments.payments.metadata import readable_metadata
from handwork_payments.payments.schemas import (
    PaymentOut,
    PayPalCreate,
    PayPalExecute,
    PayPalOrderOut,
    ReleaseCreate,
    StripeConfirm,
    StripeIntentCreate,
    StripeIntentOut,
)
from handwork_payments.providers.base import ProviderHold
from handwork_payments.runtime import Runtime

router = APIRouter(prefix="/payments", tags=["payments"])


async def present(payment: Payment, user: User, runtime: Runtime) -> PaymentOut:
    if user.role != Role.ADMIN:
        return PaymentOut.of(payment)
    out = PaymentOut.of(payment, metadata=await readable_metadata(runtime, payment, user))
    out.risk_level, out.risk_reasons = payment.risk_level, list(payment.risk_reasons)
    return out


async def with_booking(session: AsyncSession, payment_id: int) -> tuple[Payment, Booking]:
    """The payment and its booking (one statement), or a 404."""
    found = await repository.with_booking(session, payment_id)
    if found is None:
        raise NotFound("Payment not found")
    return found


async def _hold(
    runtime: Runtime,
    user: User,
    method: PaymentMethod,
    body: StripeIntentCreate | PayPalCreate,
    **for_provider: Any,
) -> tuple[Payment, ProviderHold]:
    """The hold for what every new payment's body gives (booking, amount, currency,
    metadata) and what its provider needs besides."""
    return await service.create_hold(
        runtime,
        user,
        method=method,
        booking_id=body.booking_id,
        amount=body.amount_minor,
        currency=body.currency,
        metadata=body.metadata,
        **for_provider,
    )


async def _confirmed(
    runtime: Runtime, user: User, method: PaymentMethod, **payer_done: Any
) -> PaymentOut:
    """Stripe's confirm and PayPal's execute: the payer says they have done their part."""
    runtime.providers.ensure_offered(method)
    payment = await service.confirm_hold(runtime, user, method=method, **payer_done)
    return await present(payment, user, runtime)


@router.post(
    "/stripe/payment-intent",
    status_code=status.HTTP_201_CREATED,
    response_model=StripeIntentOut,
    responses=PAYING,
)
async def create_payment_intent(
    body: StripeIntentCreate, user: ClientUser, runtime: RuntimeDep
) -> StripeIntentOut:
    runtime.providers.ensure_offered(PaymentMethod.STRIPE)
    crypto = body.payment_method == stablecoin.CRYPTO
    if crypto:
        stablecoin.check_allowed(runtime.settings, body.currency)
    payment, hold = await _hold(
        runtime,
        user,
        PaymentMethod.STRIPE,
        body,
        payment_method=None if crypto else body.payment_method,
        stablecoin=crypto,
    )
    return StripeIntentOut(**PaymentOut.of(payment).model_dump(), client_secret=hold.client_secret)


@router.post("/stripe/confirm", response_model=PaymentOut, responses=PAYING)
async def confirm_payment(body: StripeConfirm, user: ClientUser, runtime: RuntimeDep) -> PaymentOut:
    return await _confirmed(
        runtime,
        user,
        PaymentMethod.STRIPE,
        provider_payment_id=body.payment_intent_id,
        booking_id=body.booking_id,
    )


@router.post(
    "/paypal/create",
    status_code=status.HTTP_201_CREATED,
    response_model=PayPalOrderOut,
    responses=PAYING,
)
async def create_paypal_payment(
    body: PayPalCreate, user: ClientUser, runtime: RuntimeDep
) -> PayPalOrderOut:
    runtime.providers.ensure_offered(PaymentMethod.PAYPAL)
    payment, hold = await _hold(
        runtime,
        user,
        PaymentMethod.PAYPAL,
        body,
        return_url=str(body.return_url),
        cancel_url=str(body.cancel_url),
    )
    return PayPalOrderOut(**PaymentOut.of(payment).model_dump(), approval_url=hold.approval_url)


@router.post("/paypal/execute", response_model=PaymentOut, responses=PAYING)
async def execute_paypal_payment(
    body: PayPalExecute, user: ClientUser, runtime: RuntimeDep
) -> PaymentOut:
    return await _confirmed(
        runtime,
        user,
        PaymentMethod.PAYPAL,
        provider_payment_id=body.payment_id,
        booking_id=body.booking_id,
        payer_id=body.payer_id,
    )


@router.get("/", response_model=Page[PaymentOut], responses=READ)
async def list_payments(
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    page: PageDep,
    status: Annotated[PaymentStatus | None, Query()] = None,
) -> Page[PaymentOut]:
    query = repository.visible_payments(user)
    if status is not None:
        query = query.where(Payment.status == status)
    found = await paginate(session, query, page)
    return found.page([await present(p, user, runtime) for p in found.rows])


# `:int`: only digits match, so GET /payments/refund (a POST-only path) is a 405, not a
# 422 for an id "refund".
@router.get("/{payment_id:int}", response_model=PaymentOut, responses=READ_ONE)
async def get_payment(
    payment_id: PathId, user: CurrentUser, session: SessionDep, runtime: RuntimeDep
) -> PaymentOut:
    payment, booking = await with_booking(session, payment_id)
    if not repository.may_see(user, booking):
        raise NotFound("Payment not found")
    return await present(payment, user, runtime)


@router.post("/{payment_id:int}/release", response_model=PaymentOut, responses=PROVIDER_ACTION)
async def release_payment(
    payment_id: PathId,
    user: CurrentUser,
    runtime: RuntimeDep,
    body: ReleaseCreate | None = None,
) -> PaymentOut:
    milestone_id = body.milestone_id if body is not None else None
    payment = await service.release(runtime, payment_id, actor=user, milestone_id=milestone_id)
    return await present(payment, user, runtime)
