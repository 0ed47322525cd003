"""Alerts: what an operator must look at (failed payments, dead-lettered webhooks, failed
payouts, disputes, reconciliation differences). A row for GET /admin/alerts and a
warning-level structured log event: the message, plus JSON-able fields under fixed names
(`event` = "alert", `alert_kind`, `object_type`, `object_id`) that a log pipeline can
route on (LOG_FORMAT=json prints them)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import Alert

log = logging.getLogger("handwork_payments.alerts")


async def alert(
    session: AsyncSession, kind: str, message: str, object_type: str, object_id: int
) -> None:
    """Add the alert to `session`'s transaction (it exists when that commits) and log it."""
    session.add(Alert(kind=kind, message=message, object_type=object_type, object_id=object_id))
    log.warning(
        message,
        extra={
            "event": "alert",
            "alert_kind": kind,
            "object_type": object_type,
            "object_id": object_id,
        },
    )
