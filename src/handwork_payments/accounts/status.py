"""Suspension takes effect at once on every process: each request's user resolution reads
the user's row by primary key (http/deps.py), and this refuses one that is not active."""

from __future__ import annotations

from handwork_payments.accounts.audit import audit_user
from handwork_payments.db import transaction
from handwork_payments.kit.errors import Unauthorized
from handwork_payments.models import User, UserStatus
from handwork_payments.runtime import Runtime


async def refuse_inactive(runtime: Runtime, user: User) -> None:
    """A token of a suspended or erased user is refused (401) and the refusal audited."""
    if user.status == UserStatus.ACTIVE:
        return
    async with transaction(runtime.sessions) as session:
        await audit_user(
            session, user.id, "auth.token_refused", actor_id=user.id, after={"status": user.status}
        )
    raise Unauthorized(f"This account is {user.status}")
