"""The SQL of the Idempotency-Key cache (http/idempotency.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import IdempotencyRecord


async def claim(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    request_hash: str,
    ttl: timedelta,
    in_flight_timeout: timedelta,
) -> int | None:
    """The record's id when this request is to run: the key is new, its record expired
    (not purged yet), or the same request's first run died in flight (no answer after the
    timeout). None when another request holds the key: see `existing`.

    One statement: concurrent claims of one key serialise on its row, and the loser of a
    takeover sees the winner's fresh `started_at`, so exactly one of them runs."""
    values = insert(IdempotencyRecord).values(
        scope=scope, key=key, request_hash=request_hash, expires_at=func.now() + ttl
    )
    record = IdempotencyRecord
    stale_in_flight = (
        record.status_code.is_(None)
        & (record.started_at < func.now() - in_flight_timeout)
        & (record.request_hash == values.excluded.request_hash)
    )
    statement = values.on_conflict_do_update(
        constraint="uq_idempotency_records_scope_key",
        set_={
            "request_hash": values.excluded.request_hash,
            "status_code": None,
            "response_ciphertext": None,
            "created_at": func.now(),
            "started_at": func.now(),
            "expires_at": values.excluded.expires_at,
        },
        where=(record.expires_at < func.now()) | stale_in_flight,
    ).returning(record.id)
    return (await session.execute(statement)).scalar_one_or_none()


async def existing(session: AsyncSession, *, scope: str, key: str) -> IdempotencyRecord:
    found = await session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )
    return found.scalar_one()


async def finish(
    session: AsyncSession, record_id: int, status_code: int, ciphertext: bytes
) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(status_code=status_code, response_ciphertext=ciphertext)
    )


async def forget(session: AsyncSession, record_id: int) -> None:
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


async def purge_expired(session: AsyncSession) -> int:
    """Delete the records past their expiry; how many."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
