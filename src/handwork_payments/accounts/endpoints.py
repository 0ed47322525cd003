"""Admins' account management and the audit trail: /admin/users, /admin/audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from handwork_payments.accounts import service
from handwork_payments.accounts.schemas import AccountOut, AuditEntryOut, SuspendRequest
from handwork_payments.http.deps import ADMIN_ONLY, AdminUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import ACTION, ACTION_WITH_BODY, ADMIN_READ
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import Role
from handwork_payments.privacy import erasure

router = APIRouter(prefix="/admin", tags=["administration"], dependencies=[ADMIN_ONLY])

MAX_QUERY_CHARS = 200


@router.get("/users", response_model=Page[AccountOut], responses=ADMIN_READ)
async def list_users(
    session: SessionDep,
    page: PageDep,
    role: Annotated[Role | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, pattern=r"^[^\x00]*$")] = None,
) -> Page[AccountOut]:
    return await page_of(session, service.users_query(role, q), page, AccountOut.model_validate)


@router.post("/users/{user_id:int}/suspend", response_model=AccountOut, responses=ACTION_WITH_BODY)
async def suspend_user(
    user_id: PathId, body: SuspendRequest, admin: AdminUser, runtime: RuntimeDep
) -> AccountOut:
    return AccountOut.model_validate(await service.suspend(runtime, admin, user_id, body.reason))


@router.post("/users/{user_id:int}/reactivate", response_model=AccountOut, responses=ACTION)
async def reactivate_user(user_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> AccountOut:
    return AccountOut.model_validate(await service.reactivate(runtime, admin, user_id))


@router.post("/users/{user_id:int}/erase", response_model=AccountOut, responses=ACTION)
async def erase_user(user_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> AccountOut:
    return AccountOut.model_validate(await erasure.erase(runtime, admin, user_id))


@router.get("/audit", response_model=Page[AuditEntryOut], responses=ADMIN_READ)
async def list_audit(
    session: SessionDep,
    page: PageDep,
    object_type: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    object_id: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    actor_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Page[AuditEntryOut]:
    """Audit entries, newest first."""
    return await page_of(
        session,
        service.audit_query(object_type, object_id, actor_id),
        page,
        AuditEntryOut.model_validate,
    )
