from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query

from handwork_payments.analytics import repository
from handwork_payments.analytics.schemas import ClientSummary, TransactionOut, WorkerEarnings
from handwork_payments.http.deps import (
    ClientUser,
    CurrentUser,
    RuntimeDep,
    SessionDep,
    WorkerUser,
)
from handwork_payments.kit.errors import Forbidden, Unauthorized, error_responses
from handwork_payments.kit.money import format_amount
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import CurrencyIn
from handwork_payments.payouts import delay

router = APIRouter(prefix="/payments", tags=["analytics"])

CurrencyQuery = Annotated[CurrencyIn, Query()]


def _money(minor: int, currency: str) -> Decimal:
    return Decimal(format_amount(minor, currency))


@router.get(
    "/summary/client",
    response_model=ClientSummary,
    responses=error_responses(Unauthorized, Forbidden),
)
async def client_summary(
    user: ClientUser, session: SessionDep, currency: CurrencyQuery = "USD"
) -> ClientSummary:
    t = await repository.client_totals(session, user.id, currency)
    return ClientSummary(
        currency=currency,
        payment_count=t["count"],
        total_spent=_money(t["held"] + t["released"], currency),
        total_held=_money(t["held"], currency),
        total_released=_money(t["released"], currency),
        total_refunded=_money(t["refunded"], currency),
    )


@router.get(
    "/earnings/worker",
    response_model=WorkerEarnings,
    responses=error_responses(Unauthorized, Forbidden),
)
async def worker_earnings(
    user: WorkerUser, session: SessionDep, runtime: RuntimeDep, currency: CurrencyQuery = "USD"
) -> WorkerEarnings:
    since = delay.since(runtime.settings)
    t = await repository.worker_totals(session, user.id, currency, since)
    return WorkerEarnings(
        currency=currency,
        # What a payout may take now (it always meant that); with PAYOUT_DELAY_HOURS, what
        # was released within the delay is `available_soon` instead.
        available_balance=_money(t["available"], currency),
        available_soon=_money(t["available_soon"], currency),
        pending_balance=_money(t["pending"], currency),
        # What was released to the worker net of clawbacks: still available, reserved
        # for a payout, or paid out.
        total_earned=_money(
            t["available"] + t["available_soon"] + t["reserved"] + t["paid_out"], currency
        ),
        total_paid_out=_money(t["paid_out"], currency),
        pending_payouts=_money(t["reserved"], currency),
    )


@router.get(
    "/transactions", response_model=Page[TransactionOut], responses=error_responses(Unauthorized)
)
async def transactions(
    user: CurrentUser, session: SessionDep, page: PageDep
) -> Page[TransactionOut]:
    return await page_of(session, repository.transactions(user), page, TransactionOut.of)
