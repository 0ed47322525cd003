"""Alerts: what an operator must look at (failed payments, dead-lettered webhooks, failed
payouts, disputes, reconciliation differences).

An alert is written in the transaction of its cause, so a change that rolls back leaves
none. The same kind on the same object while open is one row (count and last_seen_at
grow): a guard retrying or a daily reconciliation repeats nothing. Its first occurrence
defers the delivery job (audit/tasks.py) in the same transaction, and once the
transaction commits it is logged as a warning-level structured event (`event` = "alert",
`alert_kind`, `object_type`, `object_id`) that a log pipeline can route on."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from handwork_payments.kit.clock import now
from handwork_payments.kit.jobs import defer
from handwork_payments.models import Alert, AlertStatus

log = logging.getLogger("handwork_payments.alerts")

DELIVER_TASK = "hp:deliver_alert"

_UPSERT = text(
    """
    INSERT INTO alerts (kind, message, object_type, object_id)
    VALUES (:kind, :message, :object_type, :object_id)
    ON CONFLICT (kind, object_type, object_id) WHERE status = 'open'
    DO UPDATE SET count = alerts.count + 1, last_seen_at = now(), message = EXCLUDED.message
    RETURNING id, count
    """
)

# Log records waiting for their transaction to commit, in the sync session's `info`.
_PENDING = "handwork_alert_logs"


async def alert(
    session: AsyncSession, kind: str, message: str, object_type: str, object_id: int
) -> None:
    """Record the alert in `session`'s transaction (once per open kind and object) and
    log it when that transaction commits."""
    values = {"kind": kind, "message": message, "object_type": object_type, "object_id": object_id}
    alert_id, count = (await session.execute(_UPSERT, values)).one()
    if count == 1:
        await defer(session, DELIVER_TASK, args={"alert_id": alert_id}, lock=f"alert-{alert_id}")
    extra = {
        "event": "alert",
        "alert_id": alert_id,
        "alert_kind": kind,
        "object_type": object_type,
        "object_id": object_id,
        "count": count,
    }
    session.sync_session.info.setdefault(_PENDING, []).append((message, extra))


@event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for message, extra in session.info.pop(_PENDING, ()):
        log.warning(message, extra=extra)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    pending: list[Any] = session.info.pop(_PENDING, [])
    if pending:
        log.debug("%d alerts rolled back with their transaction", len(pending))


async def acknowledge(session: AsyncSession, alert_id: int, user_id: int) -> Alert | None:
    """Someone has seen it: the next occurrence opens a new alert. Acknowledging an
    acknowledged alert changes nothing."""
    found = await session.get(Alert, alert_id, with_for_update=True)
    if found is not None and found.status == AlertStatus.OPEN:
        found.status = AlertStatus.ACKNOWLEDGED
        found.acknowledged_at = now()
        found.acknowledged_by = user_id
    return found
