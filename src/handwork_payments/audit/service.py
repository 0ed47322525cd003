"""The audit trail: one row per state change and money movement, in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import AuditLog


async def record(
    session: AsyncSession,
    *,
    actor_id: int | None,
    action: str,
    object_type: str,
    object_id: int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor_kind: str | None = None,
) -> None:
    session.add(
        AuditLog(
            actor_id=actor_id,
            actor_kind=actor_kind or ("user" if actor_id is not None else "system"),
            action=action,
            object_type=object_type,
            object_id=object_id,
            before=before,
            after=after,
        )
    )
