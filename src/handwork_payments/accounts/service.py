"""Admins' view of accounts: list, suspend, reactivate. Suspension changes nothing but the
status: the user's money stays where it is (no release, refund or payout is triggered),
and admins can still resolve its disputes and refund its payments."""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit.errors import Conflict, NotFound
from handwork_payments.models import AuditLog, Role, User, UserStatus
from handwork_payments.runtime import Runtime


def users_query(role: Role | None, q: str | None) -> Select[User]:
    query = select(User).order_by(User.id)
    if role is not None:
        query = query.where(User.role == role)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(User.email.ilike(pattern), User.full_name.ilike(pattern)))
    return query


def audit_query(
    object_type: str | None, object_id: int | None, actor_id: int | None
) -> Select[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc())
    if object_type is not None:
        query = query.where(AuditLog.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditLog.object_id == object_id)
    if actor_id is not None:
        query = query.where(AuditLog.actor_id == actor_id)
    return query


async def locked_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("User not found")
    return user


async def _set_status(
    session: AsyncSession,
    admin: User,
    user: User,
    status: UserStatus,
    action: str,
    *,
    personal: dict[str, str] | None = None,
) -> None:
    """The locked `user` to `status`, audited; one there already is left as it is (asked
    twice, an admin changes nothing the second time)."""
    if user.status == status:
        return
    before = {"status": user.status}
    user.status = status
    await record(
        session,
        actor_id=admin.id,
        action=action,
        object_type="user",
        object_id=user.id,
        before=before,
        after={"status": user.status},
        personal=personal,
    )


async def suspend(runtime: Runtime, admin: User, user_id: int, reason: str) -> User:
    async with transaction(runtime.sessions) as session:
        user = await locked_user(session, user_id)
        if user.id == admin.id:
            raise Conflict("An admin cannot suspend itself")
        if user.status == UserStatus.ERASED:
            raise Conflict("This user was erased")
        await _set_status(
            session,
            admin,
            user,
            UserStatus.SUSPENDED,
            "user.suspended",
            personal={"reason": reason},
        )
    return user


async def reactivate(runtime: Runtime, admin: User, user_id: int) -> User:
    async with transaction(runtime.sessions) as session:
        user = await locked_user(session, user_id)
        if user.status == UserStatus.ERASED:
            raise Conflict("An erased user cannot be reactivated")
        await _set_status(session, admin, user, UserStatus.ACTIVE, "user.reactivated")
    return user
