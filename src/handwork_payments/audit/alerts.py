"""Alerts: what an operator must look at (failed payments, dead-lettered webhooks, failed
payouts, disputes). A warning-level structured log line and a row for GET /admin/alerts."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import Alert

log = logging.getLogger("handwork_payments.alerts")


async def alert(
    session: AsyncSession, kind: str, message: str, object_type: str, object_id: int
) -> None:
    session.add(Alert(kind=kind, message=message, object_type=object_type, object_id=object_id))
    log.warning(
        message,
        extra={"alert": kind, "object_type": object_type, "object_id": object_id},
    )
