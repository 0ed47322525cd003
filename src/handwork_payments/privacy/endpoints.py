from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from handwork_payments.http.deps import CurrentUser, SessionDep
from handwork_payments.kit.errors import Unauthorized, error_responses
from handwork_payments.privacy import export as exporting
from handwork_payments.privacy.export import ExportOut

router = APIRouter(prefix="/auth", tags=["auth"])


@router.get("/me/export", response_model=ExportOut, responses=error_responses(Unauthorized))
async def export_me(user: CurrentUser, session: SessionDep) -> JSONResponse:
    """Everything held about the caller (GDPR access and portability), as a download."""
    document = await exporting.export(session, user)
    return JSONResponse(
        document.model_dump(mode="json"),
        headers={
            "Content-Disposition": f'attachment; filename="handwork-export-user-{user.id}.json"'
        },
    )
