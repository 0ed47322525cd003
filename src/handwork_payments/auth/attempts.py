"""Logins in the audit trail: successes, failures and refusals, with the client's address
(personal data: kept apart and erasable, audit/personal.py)."""

from __future__ import annotations

from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.models import User
from handwork_payments.runtime import Runtime

# object_id of a failed login whose email names no user.
NO_USER = 0


async def record_login(
    runtime: Runtime, action: str, user: User | None, email: str, client_ip: str
) -> None:
    async with transaction(runtime.sessions) as session:
        await record(
            session,
            actor_id=user.id if user else None,
            actor_kind="user" if user else "anonymous",
            action=action,
            object_type="user",
            object_id=user.id if user else NO_USER,
            # The email tried is kept only when it names nobody (the user's id says it).
            personal={"client_ip": client_ip} | ({} if user else {"email": _storable(email)}),
        )


def _storable(email: str) -> str:
    """What jsonb can hold of what was typed: at most 320 characters, no NUL."""
    return email[:320].replace("\x00", "\ufffd")
