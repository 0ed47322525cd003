from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from fastapi import APIRouter, status
from pydantic import BaseModel

from handwork_payments.http.deps import AdminUser, RuntimeDep
from handwork_payments.kit.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    UnparsableBody,
    Unprocessable,
    error_responses,
)
from handwork_payments.kit.money import format_amount
from handwork_payments.kit.schemas import CurrencyIn, PathId, ShortText, Strict
from handwork_payments.losses import service

router = APIRouter(prefix="/admin", tags=["administration"])


class WriteOffIn(Strict):
    reason: ShortText
    # Unset: the one currency the worker owes in.
    currency: CurrencyIn | None = None


class WriteOffOut(BaseModel):
    id: int
    worker_id: int
    amount: Decimal
    currency: str
    reason: str
    admin_id: int
    created_at: datetime


@router.post(
    "/users/{user_id:int}/write-off",
    status_code=status.HTTP_201_CREATED,
    response_model=WriteOffOut,
    responses=error_responses(
        UnparsableBody, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable
    ),
)
async def write_off(
    user_id: PathId, body: WriteOffIn, admin: AdminUser, runtime: RuntimeDep
) -> WriteOffOut:
    """Write off a worker's negative available balance (a clawback that could not be
    recovered) to platform losses; 409 when the worker owes nothing."""
    row = await service.write_off(
        runtime, user_id, reason=body.reason, currency=body.currency, admin=admin
    )
    return WriteOffOut(
        id=row.id,
        worker_id=row.worker_id,
        amount=Decimal(format_amount(row.amount, row.currency)),
        currency=row.currency,
        reason=row.reason,
        admin_id=row.admin_id,
        created_at=row.created_at,
    )
