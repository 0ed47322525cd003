from __future__ import annotations

from pydantic import Field

from handwork_payments.kit.schemas import AmountIn, Id, LongText, Strict


class RefundCreate(Strict):
    payment_id: Id
    amount: AmountIn | None = Field(default=None, description="Omitted: all that is left")
    reason: LongText
