"""Retention: a processed webhook body older than WEBHOOK_RETENTION_DAYS is reduced to its
digest (sha256 of the body as received) and its event id. Its effects are in the ledger
and the audit trail; the body may hold personal data we no longer need."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from handwork_payments.db import transaction
from handwork_payments.kit.clock import now
from handwork_payments.runtime import Runtime

BATCH = 1000


async def prune_webhook_bodies(runtime: Runtime) -> int:
    """Bodies pruned, a batch per transaction (short locks)."""
    cutoff = now() - timedelta(days=runtime.settings.webhook_retention_days)
    pruned = 0
    while True:
        async with transaction(runtime.sessions) as session:
            result = await session.execute(
                text(
                    "UPDATE webhook_deliveries SET "
                    "body_digest = encode(sha256(convert_to(body, 'UTF8')), 'hex'), body = NULL "
                    "WHERE id IN (SELECT id FROM webhook_deliveries "
                    "  WHERE body IS NOT NULL AND status = 'processed' AND received_at < :cutoff "
                    "  ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)"
                ),
                {"cutoff": cutoff, "n": BATCH},
            )
        count = result.rowcount  # type: ignore[attr-defined]
        pruned += count
        if count < BATCH:
            return pruned
