from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.rows import lock_row_or_none
from handwork_payments.models import PayoutStatus, Role, User, WorkerPayout


async def lock(session: AsyncSession, payout_id: int) -> WorkerPayout | None:
    return await lock_row_or_none(session, WorkerPayout, payout_id)


async def by_transfer_id(session: AsyncSession, transfer_id: str) -> WorkerPayout | None:
    return (
        await session.execute(
            select(WorkerPayout).where(
                (WorkerPayout.stripe_transfer_id == transfer_id)
                | (WorkerPayout.paypal_payout_id == transfer_id)
            )
        )
    ).scalar_one_or_none()


def visible(user: User, status: PayoutStatus | None = None) -> Select[WorkerPayout]:
    query = select(WorkerPayout)
    if user.role != Role.ADMIN:
        query = query.where(WorkerPayout.worker_id == user.id)
    if status is not None:
        query = query.where(WorkerPayout.status == status)
    return query.order_by(WorkerPayout.id.desc())
