from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

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
from handwork_payments.runtime import Runtime

router = APIRouter(prefix="/payments", tags=["payments"])


async def present(payment: Payment, user: User, runtime: Runtime) -> PaymentOut:
    if user.role != Role.ADMIN:
        return PaymentOut.of(payment)
    out = PaymentOut.of(payment, metadata=await readable_metadata(runtime, payment, user))
    out.risk_level, out.risk_reasons = payment.risk_level, list(payment.risk_reasons)
    return out


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
    payment, hold = await service.create_hold(
        runtime,
        user,
        method=PaymentMethod.STRIPE,
        booking_id=body.booking_id,
        amount=body.amount_minor,
        currency=body.currency,
        payment_method=None if crypto else body.payment_method,
        stablecoin=crypto,
        metadata=body.metadata,
    )
    return StripeIntentOut(**PaymentOut.of(payment).model_dump(), client_secret=hold.client_secret)


@router.post("/stripe/confirm", response_model=PaymentOut, responses=PAYING)
async def confirm_payment(body: StripeConfirm, user: ClientUser, runtime: RuntimeDep) -> PaymentOut:
    runtime.providers.ensure_offered(PaymentMethod.STRIPE)
    payment = await service.confirm_hold(
        runtime,
        user,
        method=PaymentMethod.STRIPE,
        provider_payment_id=body.payment_intent_id,
        booking_id=body.booking_id,
    )
    return await present(payment, user, runtime)


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
    payment, hold = await service.create_hold(
        runtime,
        user,
        method=PaymentMethod.PAYPAL,
        booking_id=body.booking_id,
        amount=body.amount_minor,
        currency=body.currency,
        return_url=str(body.return_url),
        cancel_url=str(body.cancel_url),
        metadata=body.metadata,
    )
    return PayPalOrderOut(**PaymentOut.of(payment).model_dump(), approval_url=hold.approval_url)


@router.post("/paypal/execute", response_model=PaymentOut, responses=PAYING)
async def execute_paypal_payment(
    body: PayPalExecute, user: ClientUser, runtime: RuntimeDep
) -> PaymentOut:
    runtime.providers.ensure_offered(PaymentMethod.PAYPAL)
    payment = await service.confirm_hold(
        runtime,
        user,
        method=PaymentMethod.PAYPAL,
        provider_payment_id=body.payment_id,
        booking_id=body.booking_id,
        payer_id=body.payer_id,
    )
    return await present(payment, user, runtime)


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
    items, total = await paginate(session, query, page)
    return Page(
        items=[await present(p, user, runtime) for p in items],
        total=total,
        skip=page.skip,
        limit=page.limit,
    )


# `:int`: only digits match, so GET /payments/refund (a POST-only path) is a 405, not a
# 422 for an id "refund".
@router.get("/{payment_id:int}", response_model=PaymentOut, responses=READ_ONE)
async def get_payment(
    payment_id: PathId, user: CurrentUser, session: SessionDep, runtime: RuntimeDep
) -> PaymentOut:
    payment = await session.get(Payment, payment_id)
    booking = await session.get(Booking, payment.booking_id) if payment else None
    if payment is None or booking is None or not repository.may_see(user, booking):
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
