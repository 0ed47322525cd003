"""The audit trail: one row per state change and money movement, in the same transaction.

A write is one INSERT and nothing else: no lock, no read of the previous row. The chain
is sealed afterwards, in commit order, by audit/chain.py (see there why)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit import personal as personal_data
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
    personal: dict[str, Any] | None = None,
    subject_id: int | None = None,
) -> None:
    """`personal`: details about a person (kept apart, erasable); personal keys found in
    before/after (emails, names, client IPs, reasons) are moved there too. `subject_id`:
    whom they are about; by default the user the entry is about, else the actor."""
    before, after, apart = personal_data.split(before, after, personal)
    if subject_id is None and apart is not None:
        # object_id 0: a failed login naming no user.
        subject_id = object_id if object_type == "user" and object_id > 0 else actor_id
    session.add(
        AuditLog(
            actor_id=actor_id,
            actor_kind=actor_kind or ("user" if actor_id is not None else "system"),
            action=action,
            object_type=object_type,
            object_id=object_id,
            before=before,
            after=after,
            subject_id=subject_id,
            personal=apart,
            personal_digest=personal_data.digest(apart) if apart is not None else None,
        )
    )


class ObjectAudit:
    """`record` for one type of object (`audit_payout = ObjectAudit("payout")`): a row names
    the object by id, and without an actor the system acted (or `actor_kind`: the provider
    whose event it was)."""

    def __init__(self, object_type: str) -> None:
        self.object_type = object_type

    async def __call__(
        self,
        session: AsyncSession,
        object_id: int,
        action: str,
        *,
        actor_id: int | None = None,
        actor_kind: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        await record(
            session,
            actor_id=actor_id,
            actor_kind=actor_kind,
            action=action,
            object_type=self.object_type,
            object_id=object_id,
            before=before,
            after=after,
        )
