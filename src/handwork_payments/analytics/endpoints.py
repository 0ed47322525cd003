from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from handwork_payments.analytics import repository
from handwork_payments.analytics.schemas import (
    ClientSummaries,
    ClientSummary,
    TransactionOut,
    WorkerBalances,
    WorkerEarnings,
)
from handwork_payments.http.deps import (
    ClientUser,
    CurrentUser,
    RuntimeDep,
    SessionDep,
    WorkerUser,
)
from handwork_payments.kit.errors import Forbidden, Unauthorized, error_responses
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import CurrencyIn
from handwork_payments.payouts import delay

router = APIRouter(prefix="/payments", tags=["analytics"])

CurrencyQuery = Annotated[CurrencyIn, Query()]
OptionalCurrency = Annotated[CurrencyIn | None, Query()]


@router.get(
    "/summary/client",
    response_model=ClientSummary | ClientSummaries,
    responses=error_responses(Unauthorized, Forbidden),
)
async def client_summary(
    user: ClientUser, session: SessionDep, currency: OptionalCurrency = None
) -> ClientSummary | ClientSummaries:
    """With `currency`, that currency's summary; without, one per currency paid in."""
    if currency is not None:
        return ClientSummary.of(
            currency, await repository.client_totals(session, user.id, currency)
        )
    found = await repository.client_totals_by_currency(session, user.id)
    return ClientSummaries(items=[ClientSummary.of(c, t) for c, t in found.items()])


@router.get(
    "/earnings/worker",
    response_model=WorkerEarnings,
    responses=error_responses(Unauthorized, Forbidden),
)
async def worker_earnings(
    user: WorkerUser, session: SessionDep, runtime: RuntimeDep, currency: CurrencyQuery = "USD"
) -> WorkerEarnings:
    since = delay.since(runtime.settings)
    totals = await repository.worker_totals(session, user.id, currency, since)
    return WorkerEarnings.of(currency, totals)


@router.get(
    "/balances",
    response_model=WorkerBalances,
    responses=error_responses(Unauthorized, Forbidden),
)
async def worker_balances(
    user: WorkerUser, session: SessionDep, runtime: RuntimeDep
) -> WorkerBalances:
    """The earnings figures in every currency the worker has, one query."""
    since = delay.since(runtime.settings)
    found = await repository.worker_totals_by_currency(session, user.id, delay_since=since)
    return WorkerBalances(items=[WorkerEarnings.of(c, t) for c, t in found.items()])


@router.get(
    "/transactions", response_model=Page[TransactionOut], responses=error_responses(Unauthorized)
)
async def transactions(
    user: CurrentUser, session: SessionDep, page: PageDep
) -> Page[TransactionOut]:
    return await page_of(session, repository.transactions(user), page, TransactionOut.of)
