from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from handwork_payments.kit.responses import RowOut, major
from handwork_payments.models import PaymentTransaction, TransactionType


class ClientSummary(BaseModel):
    currency: str
    payment_count: int
    total_spent: Decimal
    total_held: Decimal
    total_released: Decimal
    total_refunded: Decimal

    @classmethod
    def of(cls, currency: str, t: dict[str, int]) -> ClientSummary:
        return cls(
            currency=currency,
            payment_count=t["count"],
            total_spent=major(t["held"] + t["released"], currency),
            total_held=major(t["held"], currency),
            total_released=major(t["released"], currency),
            total_refunded=major(t["refunded"], currency),
        )


class ClientSummaries(BaseModel):
    """One summary per currency the client has paid in, by currency code."""

    items: list[ClientSummary]


class WorkerEarnings(BaseModel):
    currency: str
    available_balance: Decimal
    # Released, but withdrawable only once PAYOUT_DELAY_HOURS have passed (0 without a delay).
    available_soon: Decimal
    pending_balance: Decimal
    total_earned: Decimal
    total_paid_out: Decimal
    pending_payouts: Decimal

    @classmethod
    def of(cls, currency: str, t: dict[str, int]) -> WorkerEarnings:
        return cls(
            currency=currency,
            # What a payout may take now (it always meant that); with PAYOUT_DELAY_HOURS,
            # what was released within the delay is `available_soon` instead.
            available_balance=major(t["available"], currency),
            available_soon=major(t["available_soon"], currency),
            pending_balance=major(t["pending"], currency),
            # What was released to the worker net of clawbacks: still available (now or
            # soon), reserved for a payout, or paid out.
            total_earned=major(
                t["available"] + t["available_soon"] + t["reserved"] + t["paid_out"], currency
            ),
            total_paid_out=major(t["paid_out"], currency),
            pending_payouts=major(t["reserved"], currency),
        )


class WorkerBalances(BaseModel):
    """The worker's earnings in every currency they have, by currency code; never
    converted into one another."""

    items: list[WorkerEarnings]


class TransactionOut(RowOut):
    id: int
    transaction_type: TransactionType
    amount: Decimal
    currency: str
    description: str
    reference_id: str
    payment_id: int | None
    payout_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, t: PaymentTransaction) -> TransactionOut:
        return cls.from_row(t, amount=major(t.amount, t.currency))


class PaymentFigures(BaseModel):
    created: int
    # Payments that reached escrow in the window (whatever happened to them after).
    held: int
    failed: int
    # held / (held + failed), between 0 and 1; null when neither happened.
    success_rate: float | None


class DisputeFigures(BaseModel):
    opened: int
    resolved: int
    median_resolution_hours: float | None


class PayoutFigures(BaseModel):
    requested: int
    completed: int
    failed: int
    median_processing_hours: float | None


class DailyFigures(BaseModel):
    date: date
    volume: Decimal
    fee_revenue: Decimal
    provider_fees: Decimal
    losses: Decimal
    net_revenue: Decimal
    payments: int
    failed: int
    refunded: Decimal


class Analytics(BaseModel):
    currency: str
    from_: date = Field(serialization_alias="from")
    to: date
    payments: PaymentFigures
    volume: Decimal
    fee_revenue: Decimal
    provider_fees: Decimal
    losses: Decimal
    # fee_revenue - provider_fees - losses
    net_revenue: Decimal
    refunded: Decimal
    disputes: DisputeFigures
    payouts: PayoutFigures
    daily: list[DailyFigures]
