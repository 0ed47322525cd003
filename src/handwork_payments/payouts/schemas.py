from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

from handwork_payments.kit.responses import RowOut, major
from handwork_payments.kit.schemas import AmountBody, AmountIn, CurrencyIn, Id, ShortText, Strict
from handwork_payments.models import PaymentMethod, PayoutStatus, WorkerPayout

# Shapes checked here so that a malformed one is a 422 (and never reaches a column it does
# not fit: users.stripe_account_id is 64 characters).
StripeAccountId = Annotated[
    ShortText, StringConstraints(max_length=64, pattern=r"^acct_[A-Za-z0-9]+$")
]
PayPalEmail = Annotated[ShortText, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class PayoutMethods(Strict):
    stripe_account_id: StripeAccountId | None = None
    paypal_email: PayPalEmail | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> PayoutMethods:
        if self.stripe_account_id is None and self.paypal_email is None:
            raise ValueError("give stripe_account_id, paypal_email or both")
        return self


class PayoutMethodsOut(BaseModel):
    stripe_account_id: str | None
    paypal_email: str | None
    stripe_payouts_enabled: bool


class PayoutRequest(AmountBody):
    amount: AmountIn
    payment_method: PaymentMethod
    currency: CurrencyIn = Field(default="USD", description="The balance to pay out from")


class PayoutOut(RowOut):
    id: int
    worker_id: int
    amount: Decimal
    currency: str
    payment_method: PaymentMethod
    status: PayoutStatus
    requested_at: datetime | None
    processed_at: datetime | None
    completed_at: datetime | None
    failure_reason: str | None
    stripe_transfer_id: str | None
    paypal_payout_id: str | None
    # Parked for a person (an admin's hold, a clawback debt, a provider mismatch): not sent
    # until the hold ends. Why is for admins (the audit log), not the worker.
    held: bool

    @classmethod
    def of(cls, payout: WorkerPayout) -> PayoutOut:
        return cls.from_row(
            payout,
            amount=major(payout.amount, payout.currency),
            held=payout.held_reason is not None,
        )


class PayoutReason(Strict):
    reason: ShortText


class PayoutIds(Strict):
    # Each id is processed in its own transaction: 100 keeps one call short.
    ids: Annotated[list[Id], Field(min_length=1, max_length=100)]

    @model_validator(mode="after")
    def _distinct(self) -> PayoutIds:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must be distinct")
        return self


class PayoutRefused(BaseModel):
    id: int
    detail: str


class ProcessedPayouts(BaseModel):
    """Per id, in the order given: processed (`items`) or refused and why (`errors`)."""

    items: list[PayoutOut]
    errors: list[PayoutRefused]
