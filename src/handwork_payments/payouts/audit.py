"""The audit row of a change of a payout: one shape for every payout command and handler."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record


async def audit_payout(
    session: AsyncSession,
    payout_id: int,
    action: str,
    *,
    actor_id: int | None = None,
    actor_kind: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Without an actor, the system acted (or `actor_kind`: the provider whose event it was)."""
    await record(
        session,
        actor_id=actor_id,
        actor_kind=actor_kind,
        action=action,
        object_type="payout",
        object_id=payout_id,
        before=before,
        after=after,
    )
