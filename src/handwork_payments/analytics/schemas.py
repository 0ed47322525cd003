from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel

from handwork_payments.models import TransactionType


class ClientSummary(BaseModel):
    currency: str
    payment_count: int
    total_spent: Decimal
    total_held: Decimal
    total_released: Decimal
    total_refunded: Decimal


class WorkerEarnings(BaseModel):
    currency: str
    available_balance: Decimal
    pending_balance: Decimal
    total_earned: Decimal
    total_paid_out: Decimal
    pending_payouts: Decimal


class TransactionOut(BaseModel):
    id: int
    transaction_type: TransactionType
    amount: Decimal
    currency: str
    description: str
    reference_id: str
    payment_id: int | None
    payout_id: int | None
    created_at: datetime
