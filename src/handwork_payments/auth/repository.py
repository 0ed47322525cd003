from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import RateLimitCounter, User


async def by_email(session: AsyncSession, email: str) -> User | None:
    found = await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    return found.scalar_one_or_none()


# The window is computed from the database's clock, the one clock every process shares.
_WINDOW = """
    to_timestamp(floor(extract(epoch FROM now()) / :seconds) * :seconds)
"""

_HIT = text(
    f"""
    INSERT INTO rate_limit_counters AS c (bucket, window_start, window_end, hits)
    VALUES (:bucket, {_WINDOW}, {_WINDOW} + make_interval(secs => :seconds), 1)
    ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1
    RETURNING c.hits, ceil(extract(epoch FROM c.window_end - now()))::int
    """
)

_PEEK = text(
    f"""
    SELECT hits, ceil(extract(epoch FROM window_end - now()))::int
    FROM rate_limit_counters WHERE bucket = :bucket AND window_start = {_WINDOW}
    """
)


async def hit(session: AsyncSession, bucket: str, seconds: int) -> tuple[int, int]:
    """Count one attempt in the bucket's current window: (attempts so far, seconds left)."""
    row = (await session.execute(_HIT, {"bucket": bucket, "seconds": seconds})).one()
    return int(row[0]), int(row[1])


async def peek(session: AsyncSession, bucket: str, seconds: int) -> tuple[int, int]:
    """(attempts in the bucket's current window, seconds left); (0, 0) when none."""
    row = (await session.execute(_PEEK, {"bucket": bucket, "seconds": seconds})).one_or_none()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def purge_counters(session: AsyncSession) -> int:
    """Delete the counters of windows that have ended; how many."""
    result = await session.execute(
        delete(RateLimitCounter).where(RateLimitCounter.window_end < func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
