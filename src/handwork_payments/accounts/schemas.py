from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from handwork_payments.kit.schemas import ShortText
from handwork_payments.models import Role, UserStatus


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str
    role: Role
    status: UserStatus
    created_at: datetime


class SuspendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ShortText


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    actor_id: int | None
    actor_kind: str
    action: str
    object_type: str
    object_id: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    # Personal details (emails, client addresses, reasons); null once erased.
    personal: dict[str, Any] | None
    subject_id: int | None
    created_at: datetime
    chain_seq: int | None
    row_hash: str | None
