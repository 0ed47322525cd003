"""The facts the risk rules read, one statement each (they sit on the paths that move
money, whose statements are budgeted: tests/http/test_statement_budget.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, BindParameter, DateTime, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import (
    Booking,
    Payment,
    PaymentStatus,
    PayoutStatus,
    User,
    WorkerPayout,
)
from handwork_payments.risk import signals


@dataclass(frozen=True)
class ClientHistory:
    payments_last_hour: int  # the client's payments created within an hour (any status)
    payments_last_day: int
    declines_last_day: int
    largest: int | None  # its largest payment in the currency that did not fail
    worker_registered_at: datetime
    shared: list[str]  # kinds of signal the client shares with the worker


async def client_history(
    session: AsyncSession, client_id: int, worker_id: int, currency: str, now: datetime
) -> ClientHistory:
    params = {
        "client_id": client_id,
        "worker_id": worker_id,
        "currency": currency,
        "hour": now - timedelta(hours=1),
        "day": now - timedelta(days=1),
    }
    row = (await session.execute(_client_history(), params)).one()
    return ClientHistory(int(row[0]), int(row[1]), int(row[2]), row[3], row[4], list(row[5] or []))


async def worker_payouts(
    session: AsyncSession, worker_id: int, now: datetime
) -> tuple[int, int, list[str]]:
    """The worker's payouts that did not fail (all, and those requested within a day),
    and the kinds of signal it shares with any client that paid it."""
    params = {"worker_id": worker_id, "day": now - timedelta(days=1)}
    row = (await session.execute(_worker_payouts(), params)).one()
    return int(row[0]), int(row[1]), list(row[2] or [])


# Built once per process, with bound parameters: built per call (aliases, subqueries),
# construction and cache key cost more Python than the statement's execution.


@cache
def _client_history() -> Select[Any]:
    client_id, worker_id = _id("client_id"), _id("worker_id")
    hour, day = _at("hour"), _at("day")
    failed = Payment.status == PaymentStatus.FAILED
    return (
        select(
            func.count().filter(Payment.created_at >= hour),
            func.count().filter(Payment.created_at >= day),
            func.count().filter(Payment.created_at >= day, failed),
            func.max(Payment.amount).filter(~failed, Payment.currency == bindparam("currency")),
            select(User.created_at).where(User.id == worker_id).scalar_subquery(),
            signals.shared_kinds(client_id, [worker_id]),
        )
        .select_from(Payment)
        .join(Booking, Booking.id == Payment.booking_id)
        .where(Booking.client_id == client_id)
    )


@cache
def _worker_payouts() -> Select[Any]:
    worker_id = _id("worker_id")
    clients = (
        select(Booking.client_id)
        .join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.worker_id == worker_id, Payment.status != PaymentStatus.FAILED)
    )
    return select(
        func.count(),
        func.count().filter(WorkerPayout.requested_at >= _at("day")),
        signals.shared_kinds(worker_id, clients.scalar_subquery()),
    ).where(WorkerPayout.worker_id == worker_id, WorkerPayout.status != PayoutStatus.FAILED)


def _id(name: str) -> BindParameter[int]:
    return bindparam(name, type_=BigInteger)


def _at(name: str) -> BindParameter[datetime]:
    return bindparam(name, type_=DateTime(timezone=True))
