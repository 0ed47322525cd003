"""Admins answer a chargeback with evidence: preview what we hold, then submit it (with a
statement of their own) to the provider. `{dispute_id}` is our dispute's id."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from handwork_payments.disputes import submission
from handwork_payments.http.deps import ADMIN_ONLY, AdminUser, RuntimeDep
from handwork_payments.http.responses import ACTION, PROVIDER_ACTION
from handwork_payments.kit.schemas import LongText, PathId, Strict
from handwork_payments.models import DisputeEvidence, EvidenceStatus

router = APIRouter(prefix="/admin/chargebacks", tags=["disputes"], dependencies=[ADMIN_ONLY])


class EvidenceSubmit(Strict):
    text: LongText | None = None


class EvidenceFields(BaseModel):
    """What is (or would be) sent, in our terms; each provider's limits cut it on the way."""

    product_description: str
    customer_name: str
    customer_email: str
    customer_purchase_ip: str | None
    service_date: str | None
    access_activity_log: str
    uncategorized_text: str


class EvidenceOut(BaseModel):
    dispute_id: int
    # null: nothing submitted yet (the fields are what would be sent without text)
    status: EvidenceStatus | None
    attempt: int | None
    admin_text: str | None
    last_error: str | None
    submitted_at: datetime | None
    evidence: EvidenceFields

    @classmethod
    def of(cls, dispute_id: int, row: DisputeEvidence | None, evidence: object) -> EvidenceOut:
        return cls(
            dispute_id=dispute_id,
            status=row.status if row else None,
            attempt=row.attempt if row else None,
            admin_text=row.admin_text if row else None,
            last_error=row.last_error if row else None,
            submitted_at=row.submitted_at if row else None,
            evidence=EvidenceFields.model_validate(evidence),
        )


@router.get("/{dispute_id:int}/evidence", response_model=EvidenceOut, responses=ACTION)
async def preview_evidence(dispute_id: PathId, runtime: RuntimeDep) -> EvidenceOut:
    row, evidence = await submission.preview(runtime, dispute_id)
    return EvidenceOut.of(dispute_id, row, evidence)


@router.post("/{dispute_id:int}/evidence", response_model=EvidenceOut, responses=PROVIDER_ACTION)
async def submit_evidence(
    dispute_id: PathId, admin: AdminUser, runtime: RuntimeDep, body: EvidenceSubmit | None = None
) -> EvidenceOut:
    text = body.text if body is not None else None
    row = await submission.submit(runtime, admin, dispute_id, text)
    return EvidenceOut.of(dispute_id, row, row.evidence)
