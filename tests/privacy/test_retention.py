"""Retention: old processed webhook bodies reduced to digest and event id; replays of
those refused, other replays audited."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select, text

from handwork_payments.kit.clock import now
from handwork_payments.models import AuditLog, WebhookDelivery
from handwork_payments.privacy.retention import prune_webhook_bodies
from handwork_payments.runtime import Runtime
from tests.helpers import Api

BODY = '{"id": "evt_%s", "data": {"object": {"receipt_email": "ann@example.com"}}}'


async def _delivery(runtime: Runtime, name: str, status: str, age_days: int) -> int:
    async with runtime.engine.begin() as conn:
        found = await conn.execute(
            text(
                "INSERT INTO webhook_deliveries (provider, event_id, event_type, status, "
                "attempts, headers, body, signature_valid, received_at) VALUES ('stripe', "
                ":event, 'charge.succeeded', :status, 1, '{}', :body, true, :at) RETURNING id"
            ),
            {
                "event": f"evt_{name}",
                "status": status,
                "body": BODY % name,
                "at": now() - timedelta(days=age_days),
            },
        )
        return int(found.scalar_one())


async def test_old_processed_bodies_keep_only_digest_and_event_id(
    api: Api, runtime: Runtime
) -> None:
    old = await _delivery(runtime, "old", "processed", 91)
    recent = await _delivery(runtime, "recent", "processed", 89)
    failing = await _delivery(runtime, "failing", "dead", 200)
    assert await prune_webhook_bodies(runtime) == 1
    assert await prune_webhook_bodies(runtime) == 0
    async with runtime.sessions() as session:
        rows = {d.id: d for d in (await session.scalars(select(WebhookDelivery))).all()}
    assert (rows[old].body, rows[old].event_id) == (None, "evt_old")
    assert rows[old].body_digest == hashlib.sha256((BODY % "old").encode()).hexdigest()
    assert rows[recent].body == BODY % "recent" and rows[failing].body == BODY % "failing"

    admin = await api.admin()
    r = await api.post(f"/admin/webhooks/{old}/replay", admin)
    assert (r.status_code, r.json()) == (
        409,
        {"detail": "This delivery's body is no longer kept (WEBHOOK_RETENTION_DAYS)"},
    )
    r = await api.post(f"/admin/webhooks/{recent}/replay", admin)
    assert r.status_code == 200, r.text
    async with runtime.sessions() as session:
        replays = (
            await session.execute(
                select(AuditLog.actor_id, AuditLog.object_id).where(
                    AuditLog.action == "webhook.replayed"
                )
            )
        ).all()
    assert replays == [(admin.id, recent)]
