from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from handwork_payments.kit.schemas import ShortText
from handwork_payments.models import Role, UserStatus


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Field(min_length=8, max_length=200)
    # Stripped, 1-200 characters, no NUL (which PostgreSQL cannot store).
    full_name: ShortText
    role: Literal["client", "worker"] = Field(
        description="client or worker; admins are not self-registered"
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str
    role: Role
    status: UserStatus


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
