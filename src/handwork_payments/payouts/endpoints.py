from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from handwork_payments.http.deps import AdminUser, CurrentUser, RuntimeDep, SessionDep, WorkerUser
from handwork_payments.http.responses import ACTION, ACTION_WITH_BODY, READ
from handwork_payments.kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Unauthorized,
    UnparsableBody,
    error_responses,
)
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import PaymentMethod, PayoutStatus
from handwork_payments.payouts import controls, methods, repository, service
from handwork_payments.payouts.schemas import (
    PayoutIds,
    PayoutMethods,
    PayoutMethodsOut,
    PayoutOut,
    PayoutReason,
    PayoutRefused,
    PayoutRequest,
    ProcessedPayouts,
)

router = APIRouter(prefix="/payments", tags=["payouts"])


@router.put(
    "/payout-methods",
    response_model=PayoutMethodsOut,
    responses=error_responses(BadRequest, Unauthorized, Forbidden, Conflict),
)
async def set_payout_methods(
    body: PayoutMethods, worker: WorkerUser, runtime: RuntimeDep
) -> PayoutMethodsOut:
    if body.stripe_account_id is not None:
        runtime.providers.ensure_offered(PaymentMethod.STRIPE)
    if body.paypal_email is not None:
        runtime.providers.ensure_offered(PaymentMethod.PAYPAL)
    user = await methods.set_methods(
        runtime, worker, stripe_account_id=body.stripe_account_id, paypal_email=body.paypal_email
    )
    return PayoutMethodsOut(
        stripe_account_id=user.stripe_account_id,
        paypal_email=user.paypal_email,
        stripe_payouts_enabled=user.stripe_payouts_enabled,
    )


@router.post(
    "/payouts/request",
    status_code=status.HTTP_201_CREATED,
    response_model=PayoutOut,
    responses=error_responses(BadRequest, Unauthorized, Forbidden),
)
async def request_payout(body: PayoutRequest, worker: WorkerUser, runtime: RuntimeDep) -> PayoutOut:
    runtime.providers.ensure_offered(body.payment_method)
    payout = await service.request(
        runtime,
        worker,
        amount=body.amount_minor,
        method=body.payment_method,
        currency=body.currency,
    )
    return PayoutOut.of(payout)


@router.get("/payouts", response_model=Page[PayoutOut], responses=READ)
async def list_payouts(
    user: CurrentUser,
    session: SessionDep,
    page: PageDep,
    status: Annotated[PayoutStatus | None, Query(description="Only payouts in this status")] = None,
) -> Page[PayoutOut]:
    return await page_of(session, repository.visible(user, status), page, PayoutOut.of)


# Many at once. It cannot shadow `/payouts/{payout_id:int}/process` (one) nor be shadowed by
# it: the segments differ in number, and `process` is no int.
@router.post(
    "/payouts/process",
    response_model=ProcessedPayouts,
    responses=error_responses(UnparsableBody, Unauthorized, Forbidden),
)
async def process_payouts(
    body: PayoutIds, admin: AdminUser, runtime: RuntimeDep
) -> ProcessedPayouts:
    processed, refused = await controls.process_many(runtime, admin, body.ids)
    return ProcessedPayouts(
        items=[PayoutOut.of(p) for p in processed],
        errors=[PayoutRefused(id=r.payout_id, detail=r.detail) for r in refused],
    )


@router.post("/payouts/{payout_id:int}/process", response_model=PayoutOut, responses=ACTION)
async def process_payout(payout_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> PayoutOut:
    return PayoutOut.of(await service.process(runtime, admin, payout_id))


@router.post(
    "/payouts/{payout_id:int}/reject", response_model=PayoutOut, responses=ACTION_WITH_BODY
)
async def reject_payout(
    payout_id: PathId, body: PayoutReason, admin: AdminUser, runtime: RuntimeDep
) -> PayoutOut:
    return PayoutOut.of(await controls.reject(runtime, admin, payout_id, body.reason))


@router.post("/payouts/{payout_id:int}/hold", response_model=PayoutOut, responses=ACTION_WITH_BODY)
async def hold_payout(
    payout_id: PathId, body: PayoutReason, admin: AdminUser, runtime: RuntimeDep
) -> PayoutOut:
    return PayoutOut.of(await controls.hold(runtime, admin, payout_id, body.reason))


@router.post("/payouts/{payout_id:int}/release-hold", response_model=PayoutOut, responses=ACTION)
async def release_payout_hold(
    payout_id: PathId, admin: AdminUser, runtime: RuntimeDep
) -> PayoutOut:
    return PayoutOut.of(await controls.release_hold(runtime, admin, payout_id))
