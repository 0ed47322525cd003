from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from handwork_payments.auth.schemas import UserOut
from handwork_payments.kit.schemas import ShortText


# A user as admins list them: also since when the account exists. (A comment, not a
# docstring: that would become the schema's description.)
class AccountOut(UserOut):
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
