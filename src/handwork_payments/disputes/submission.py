"""Submitting a chargeback's evidence to the provider, after an admin has reviewed it.

The house pattern for a provider call: the submission is marked `submitting` (with the
evidence as it will be sent) and committed; the provider is called outside any
transaction under the key `dispute-{id}-evidence-{attempt}`; the outcome is applied in a
new transaction. No answer: the row stays `submitting` and the admin's next POST, or the
worker's sweep once PROVIDER_OPERATION_STALE_SECONDS have passed, sends the same evidence
under the same key (the provider acts once). A refusal: `failed`, and a later POST is a new
attempt, assembled afresh, under a new key. A chargeback closed while its submission was
in flight takes none any more: the sweep marks the submission `failed`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.disputes import repository
from handwork_payments.disputes.evidence import assemble
from handwork_payments.disputes.service import ACTIVE, audit_dispute
from handwork_payments.disputes.states import DISPUTE, EVIDENCE
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict, DomainError, NotFound, ProviderUnavailable
from handwork_payments.models import (
    DisputeEvidence,
    DisputeStatus,
    EvidenceStatus,
    Payment,
    PaymentDispute,
    User,
)
from handwork_payments.providers.base import (
    ChargebackEvidence,
    EvidenceSubmitter,
    ProviderError,
    ProviderUnavailableError,
)
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)


def evidence_key(dispute_id: int, attempt: int) -> str:
    return f"dispute-{dispute_id}-evidence-{attempt}"


async def _chargeback(session: AsyncSession, dispute_id: int, *, lock: bool) -> PaymentDispute:
    """The dispute, when it is a provider's chargeback (409 for one of our own)."""
    if lock:
        dispute = await repository.lock(session, dispute_id)
    else:
        dispute = await session.get(PaymentDispute, dispute_id)
    if dispute is None:
        raise NotFound("Dispute not found")
    if dispute.provider_dispute_id is None:
        raise Conflict(
            f"Dispute #{dispute.id} is not a chargeback: it was opened on our API and our "
            "admins decide it; there is nothing to submit to a provider"
        )
    return dispute


async def _submission(session: AsyncSession, dispute_id: int) -> DisputeEvidence | None:
    return await session.scalar(
        select(DisputeEvidence)
        .where(DisputeEvidence.dispute_id == dispute_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def preview(runtime: Runtime, dispute_id: int) -> tuple[DisputeEvidence | None, Any]:
    """The submission so far (None before the first) and the evidence: as sent once it is
    submitted or in flight, else as it would be assembled now."""
    async with runtime.read_sessions() as session:
        dispute = await _chargeback(session, dispute_id, lock=False)
        row = await session.scalar(
            select(DisputeEvidence).where(DisputeEvidence.dispute_id == dispute_id)
        )
        if row is not None and row.status != EvidenceStatus.FAILED:
            return row, row.evidence
        return row, asdict(await assemble(session, dispute, None))


async def _mark(
    session: AsyncSession, admin: User, dispute_id: int, text: str | None
) -> tuple[DisputeEvidence, str, str]:
    """The submission to make, marked `submitting` (or the one in flight, resumed); its
    provider dispute id and the payment method."""
    dispute = await _chargeback(session, dispute_id, lock=True)
    row = await _submission(session, dispute_id)
    if row is not None and row.status == EvidenceStatus.SUBMITTED:
        raise Conflict(f"Dispute #{dispute.id}'s evidence was submitted already")
    if dispute.status not in ACTIVE:
        raise Conflict(f"Dispute #{dispute.id} is {dispute.status}: it takes no evidence")
    payment = await session.get(Payment, dispute.payment_id)
    assert payment is not None and dispute.provider_dispute_id is not None
    if row is not None and row.status == EvidenceStatus.SUBMITTING:
        if text is not None and text != row.admin_text:
            raise Conflict(
                f"Dispute #{dispute.id}'s evidence is being submitted with other text; "
                "submit again without text (or the same) to finish it"
            )
        return row, dispute.provider_dispute_id, payment.payment_method
    evidence = asdict(await assemble(session, dispute, text))
    if row is None:
        row = DisputeEvidence(
            dispute_id=dispute.id,
            status=EvidenceStatus.SUBMITTING,
            attempt=1,
            admin_text=text,
            evidence=evidence,
            submitted_by=admin.id,
            marked_at=now(),
        )
        session.add(row)
        await session.flush()
    else:
        EVIDENCE.check(row.status, EvidenceStatus.SUBMITTING)
        row.status = EvidenceStatus.SUBMITTING
        row.attempt += 1
        row.admin_text, row.evidence, row.submitted_by = text, evidence, admin.id
        row.marked_at = now()
    await audit_dispute(
        session,
        dispute.id,
        "dispute.evidence_submitting",
        actor_id=admin.id,
        after={"attempt": row.attempt, "with_text": text is not None},
    )
    return row, dispute.provider_dispute_id, payment.payment_method


async def _apply(
    session: AsyncSession, admin: User, row_id: int, refusal: str | None
) -> DisputeEvidence:
    """The provider's answer: submitted (the dispute goes under review) or refused. Locks
    the dispute, then its submission, in the order `_mark` takes them."""
    dispute_id = await session.scalar(
        select(DisputeEvidence.dispute_id).where(DisputeEvidence.id == row_id)
    )
    assert dispute_id is not None
    dispute = await repository.lock(session, dispute_id)
    row = await _submission(session, dispute_id)
    assert dispute is not None and row is not None
    if row.status != EvidenceStatus.SUBMITTING:
        return row  # applied already, by a concurrent submission
    target = EvidenceStatus.FAILED if refusal else EvidenceStatus.SUBMITTED
    EVIDENCE.check(row.status, target)
    row.status, row.last_error = target, refusal
    if refusal is None:
        row.submitted_at = now()
        if dispute.status == DisputeStatus.OPEN:
            DISPUTE.check(dispute.status, DisputeStatus.UNDER_REVIEW)
            dispute.status = DisputeStatus.UNDER_REVIEW
    else:
        await alert(
            session,
            "evidence_refused",
            f"The provider refused the evidence for chargeback {dispute.provider_dispute_id} "
            f"(dispute #{dispute.id}): {refusal}",
            "dispute",
            dispute.id,
        )
    await audit_dispute(
        session,
        dispute.id,
        f"dispute.evidence_{target}",
        actor_id=admin.id,
        after={"attempt": row.attempt, "status": dispute.status, "error": refusal},
    )
    return row


async def submit(
    runtime: Runtime, admin: User, dispute_id: int, text: str | None
) -> DisputeEvidence:
    async with transaction(runtime.sessions) as session:
        row, provider_dispute_id, method = await _mark(session, admin, dispute_id, text)
    provider = runtime.providers.for_method(method)
    if not isinstance(provider, EvidenceSubmitter):
        raise Conflict(f"{provider.name} takes no evidence through its API")
    try:
        await provider.submit_evidence(
            dispute_id=provider_dispute_id,
            evidence=ChargebackEvidence(**row.evidence),
            idempotency_key=evidence_key(dispute_id, row.attempt),
        )
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(
            f"{provider.name} did not answer; submit again to finish dispute #{dispute_id}'s "
            "submission (the same evidence, sent once)"
        ) from exc
    except ProviderError as exc:
        async with transaction(runtime.sessions) as session:
            await _apply(session, admin, row.id, exc.message)
        raise Conflict(f"{provider.name} refused the evidence: {exc.message}") from exc
    async with transaction(runtime.sessions) as session:
        return await _apply(session, admin, row.id, None)


# At most this many submissions resumed per sweep, so one run never holds a worker long.
MAX_RESUMED_PER_RUN = 50


async def _stale(runtime: Runtime, cutoff: datetime) -> list[tuple[int, int, DisputeStatus]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(DisputeEvidence.id, DisputeEvidence.submitted_by, PaymentDispute.status)
            .join(PaymentDispute, PaymentDispute.id == DisputeEvidence.dispute_id)
            .where(
                DisputeEvidence.status == EvidenceStatus.SUBMITTING,
                DisputeEvidence.marked_at < cutoff,
            )
            .order_by(DisputeEvidence.marked_at)
            .limit(MAX_RESUMED_PER_RUN)
        )
        return [(row_id, admin_id, status) for row_id, admin_id, status in rows]


async def resume_stale(runtime: Runtime, *, now: datetime) -> list[int]:
    """Submissions left in flight for longer than PROVIDER_OPERATION_STALE_SECONDS, made
    again (same evidence, same key) in the name of the admin who started them; those whose
    chargeback closed meanwhile marked failed. The dispute ids submitted now."""
    cutoff = now - timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    done = []
    for row_id, admin_id, status in await _stale(runtime, cutoff):
        async with transaction(runtime.sessions) as session:
            admin = await session.get(User, admin_id)
            row = await session.get(DisputeEvidence, row_id)
            assert admin is not None and row is not None
            if status not in ACTIVE:
                await _apply(session, admin, row_id, f"dispute {status} before it was confirmed")
                continue
        try:
            await submit(runtime, admin, row.dispute_id, None)
        except DomainError as exc:
            log.warning("evidence of dispute %s not resumed: %s", row.dispute_id, exc.detail)
            continue
        done.append(row.dispute_id)
    return done
