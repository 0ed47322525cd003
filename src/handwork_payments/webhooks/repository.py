from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.rows import lock_row_or_none
from handwork_payments.models import DeliveryStatus, WebhookDelivery


async def insert_once(session: AsyncSession, values: dict[str, object]) -> int | None:
    """The new delivery's id, or None when (provider, event_id) - or (provider,
    transmission_id) - was stored before."""
    return (
        await session.execute(
            insert(WebhookDelivery)
            .values(**values, status=DeliveryStatus.RECEIVED, attempts=0)
            .on_conflict_do_nothing()
            .returning(WebhookDelivery.id)
        )
    ).scalar_one_or_none()


async def body_of_transmission(
    session: AsyncSession, provider: str, transmission_id: str
) -> str | None:
    """The body stored under a provider's transmission id, if any."""
    return await session.scalar(
        select(WebhookDelivery.body).where(
            WebhookDelivery.provider == provider,
            WebhookDelivery.transmission_id == transmission_id,
        )
    )


async def lock(session: AsyncSession, delivery_id: int) -> WebhookDelivery | None:
    return await lock_row_or_none(session, WebhookDelivery, delivery_id)
