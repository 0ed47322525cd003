from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import User


async def by_email(session: AsyncSession, email: str) -> User | None:
    found = await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    return found.scalar_one_or_none()
