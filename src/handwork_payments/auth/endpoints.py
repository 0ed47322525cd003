from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from handwork_payments.auth import service
from handwork_payments.auth.schemas import RegisterRequest, TokenOut, UserOut
from handwork_payments.http.deps import CurrentUser, RuntimeDep
from handwork_payments.kit.errors import Conflict, Unauthorized, UnparsableBody, error_responses
from handwork_payments.models import Role

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(UnparsableBody, Conflict),
)
async def register(body: RegisterRequest, runtime: RuntimeDep) -> UserOut:
    user = await service.register(
        runtime,
        email=str(body.email),
        password=body.password,
        full_name=body.full_name,
        role=Role(body.role),
    )
    return UserOut.model_validate(user)


@router.post("/token", response_model=TokenOut, responses=error_responses(Unauthorized))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], runtime: RuntimeDep, request: Request
) -> TokenOut:
    access_token = await service.login(
        runtime, email=form.username, password=form.password, client_ip=client_ip(request)
    )
    return TokenOut(access_token=access_token)


def client_ip(request: Request) -> str:
    """The TCP peer's address (X-Forwarded-For is not read: any client can set it)."""
    return request.client.host if request.client else "unknown"


@router.get("/me", response_model=UserOut, responses=error_responses(Unauthorized))
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
