"""Typed dependency aliases shared by every endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, params
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.accounts.status import refuse_inactive
from handwork_payments.auth import tokens
from handwork_payments.kit.caller import set_client_ip
from handwork_payments.kit.errors import Forbidden, Unauthorized
from handwork_payments.kit.rows import row_or_none
from handwork_payments.models import Role, User
from handwork_payments.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
    # for every request to read one attribute.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """A session for reads. Writes go through service commands, which own their
    transactions because provider calls must happen between them."""
    async with runtime.read_sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def get_current_user(
    request: Request, runtime: RuntimeDep, token: Annotated[str | None, Depends(_bearer)]
) -> User:
    set_client_ip(request.client.host if request.client else None)
    if not token:
        raise Unauthorized("Not authenticated")
    user_id = tokens.subject(token, runtime.jwt_secret)
    user = None
    if user_id is not None:
        # A session of its own, closed at once: a request must not keep a pooled
        # connection for its whole life while its service command takes another, or a
        # burst of requests larger than the pool deadlocks the process (each holding
        # one connection, all waiting for a second). Autocommit: one round trip, no
        # BEGIN and ROLLBACK around it; the row read is current, so a suspension or a
        # role change takes effect at the next request.
        async with runtime.read_sessions() as session:
            user = await row_or_none(session, User, user_id)
    if user is None:
        raise Unauthorized("Invalid or expired token")
    await refuse_inactive(runtime, user)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> params.Depends:
    async def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"Only {' or '.join(r.value for r in roles)} users may do this")
        return user

    return Depends(check)


# A router whose every route is for admins says so once, `dependencies=[ADMIN_ONLY]`; a
# route that needs the admin as well asks for `AdminUser`, the same check (run once).
ADMIN_ONLY = require_role(Role.ADMIN)
AdminUser = Annotated[User, ADMIN_ONLY]
ClientUser = Annotated[User, require_role(Role.CLIENT)]
WorkerUser = Annotated[User, require_role(Role.WORKER)]
