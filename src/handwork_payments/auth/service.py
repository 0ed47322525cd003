from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError

from handwork_payments.accounts.audit import audit_user
from handwork_payments.auth import limits, repository, tokens
from handwork_payments.auth.attempts import record_login
from handwork_payments.db import transaction
from handwork_payments.kit.errors import Conflict, Unauthorized
from handwork_payments.models import Role, SignalKind, User, UserStatus
from handwork_payments.risk import signals
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)


async def register(
    runtime: Runtime, *, email: str, password: str, full_name: str, role: Role, client_ip: str
) -> User:
    await limits.count_registration(runtime, client_ip)
    password_hash = await runtime.passwords.hash(password)
    try:
        async with transaction(runtime.sessions) as session:
            if await repository.by_email(session, email):
                raise Conflict("A user with this email already exists")
            user = User(
                email=email.lower(),
                password_hash=password_hash,
                full_name=full_name,
                role=role,
            )
            session.add(user)
            await session.flush()
            await audit_user(
                session,
                user.id,
                "user.registered",
                actor_id=user.id,
                after={"email": user.email, "role": role.value},
            )
            # Who registers where, and the email a PayPal payout could reach them at: what
            # tells the risk rules that a client and a worker are one person.
            key = signals.runtime_key(runtime)
            await signals.note_value(session, key, user.id, SignalKind.IP, client_ip)
            await signals.note_value(session, key, user.id, SignalKind.DESTINATION, user.email)
    except IntegrityError as exc:  # a concurrent registration of the same email won
        raise Conflict("A user with this email already exists") from exc
    return user


async def login(runtime: Runtime, *, email: str, password: str, client_ip: str) -> str:
    # Both limits are checked before argon2 runs: a refused attempt costs no hashing.
    await limits.count_login(runtime, client_ip)
    await limits.check_account(runtime, email)
    user = None
    if "\x00" not in email:  # no stored email has one, and PostgreSQL cannot compare it
        async with runtime.sessions() as session:
            user = await repository.by_email(session, email)
    verified = await runtime.passwords.verify(user.password_hash if user else None, password)
    if not verified or user is None:
        # Unknown emails count too: the answers must not tell which accounts exist.
        await limits.count_failure(runtime, email)
        await record_login(runtime, "auth.login_failed", user, email, client_ip)
        raise Unauthorized("Incorrect email or password")
    if user.status != UserStatus.ACTIVE:
        await record_login(runtime, "auth.login_refused", user, email, client_ip)
        raise Unauthorized(f"This account is {user.status}")
    await record_login(runtime, "auth.login", user, email, client_ip)
    await signals.note_address(runtime, user.id, client_ip)
    return tokens.issue(user.id, runtime.jwt_secret, runtime.settings.jwt_expire_minutes)


async def ensure_admin(runtime: Runtime, *, email: str, password: str, full_name: str) -> bool:
    """Create an admin unless a user with that email exists; True when one was created."""
    async with runtime.sessions() as session:
        if await repository.by_email(session, email):
            return False
    password_hash = await runtime.passwords.hash(password)
    try:
        async with transaction(runtime.sessions) as session:
            user = User(
                email=email.lower(),
                password_hash=password_hash,
                full_name=full_name,
                role=Role.ADMIN,
            )
            session.add(user)
            await session.flush()
            await audit_user(session, user.id, "user.admin_created", after={"email": user.email})
    except IntegrityError:  # another process created it at the same moment
        return False
    log.info("created admin %s", email)
    return True
