from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from handwork_payments.kit.schemas import AmountIn, Id, LongText, ShortText, Strict
from handwork_payments.models import DisputeOutcome, DisputeStatus


class DisputeCreate(Strict):
    payment_id: Id
    reason: ShortText
    description: LongText


class DisputeResolve(Strict):
    outcome: DisputeOutcome
    refund_amount: AmountIn | None = Field(default=None, description="With a split: refunded part")
    resolution_notes: LongText


class DisputeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    payment_id: int
    initiated_by: int | None
    reason: str
    description: str
    status: DisputeStatus
    outcome: DisputeOutcome | None
    resolution_notes: str | None
    resolved_by: int | None
    resolved_at: datetime | None
    created_at: datetime
