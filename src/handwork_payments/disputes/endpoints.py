from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from handwork_payments.disputes import repository, service
from handwork_payments.disputes.schemas import DisputeCreate, DisputeOut, DisputeResolve
from handwork_payments.http.amounts import minor_units
from handwork_payments.http.deps import AdminUser, CurrentUser, RuntimeDep, SessionDep, require_role
from handwork_payments.http.responses import ACTION, ACTION_WITH_BODY, READ, REFUNDING
from handwork_payments.kit.errors import NotFound
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import Payment, PaymentDispute, Role, User

router = APIRouter(prefix="/payments/disputes", tags=["disputes"])

# Admins see every payment but open no dispute: a 403, not the stranger's 404.
ClientOrWorker = Annotated[User, require_role(Role.CLIENT, Role.WORKER)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DisputeOut,
    responses=ACTION_WITH_BODY,
)
async def create_dispute(
    body: DisputeCreate, user: ClientOrWorker, runtime: RuntimeDep
) -> DisputeOut:
    dispute = await service.open_dispute(
        runtime, user, payment_id=body.payment_id, reason=body.reason, description=body.description
    )
    return DisputeOut.model_validate(dispute)


@router.get("", response_model=Page[DisputeOut], responses=READ)
async def list_disputes(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[DisputeOut]:
    return await page_of(session, repository.visible(user), page, DisputeOut.model_validate)


@router.post("/{dispute_id:int}/review", response_model=DisputeOut, responses=ACTION)
async def review_dispute(dispute_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> DisputeOut:
    return DisputeOut.model_validate(await service.review(runtime, admin, dispute_id))


@router.post("/{dispute_id:int}/resolve", response_model=DisputeOut, responses=REFUNDING)
async def resolve_dispute(
    dispute_id: PathId, body: DisputeResolve, admin: AdminUser, runtime: RuntimeDep
) -> DisputeOut:
    refund_amount = None
    if body.refund_amount is not None:
        async with runtime.sessions() as session:
            dispute = await session.get(PaymentDispute, dispute_id)
            payment = await session.get(Payment, dispute.payment_id) if dispute else None
        if payment is None:
            raise NotFound("Dispute not found")
        refund_amount = minor_units("refund_amount", body.refund_amount, payment.currency)
    dispute = await service.resolve(
        runtime,
        admin,
        dispute_id,
        outcome=body.outcome,
        refund_amount=refund_amount,
        resolution_notes=body.resolution_notes,
    )
    return DisputeOut.model_validate(dispute)
