"""A chargeback won after the booking was completed: the payment is held again and its
automatic release is scheduled again (the old deadline passed, its job skipped, while the
money was frozen), never released the moment the dispute closes."""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from handwork_payments.kit.clock import now
from handwork_payments.models import Booking, Payment, WebhookDelivery
from handwork_payments.payments import background
from handwork_payments.providers import stripe_events
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as inbox
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.faults import payment_row
from tests.helpers import Api


async def deliver(api: Api, event_type: str, obj: dict[str, Any]) -> None:
    """A signed Stripe event posted to our endpoint and processed as the worker would."""
    event_id = f"evt_{secrets.token_hex(8)}"
    body = json.dumps(
        {"id": event_id, "type": event_type, "created": int(time.time()), "data": {"object": obj}}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": stripe_events.sign(body, TEST_WEBHOOK_SECRET),
    }
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session:
        delivery_id = await session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.event_id == event_id)
        )
    assert delivery_id is not None
    processed = await inbox.process(api.runtime, delivery_id)
    assert processed is not None and processed.status == "processed", processed


async def auto_release_jobs(runtime: Runtime, payment_id: int) -> list[Any]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT scheduled_at FROM procrastinate_jobs WHERE task_name = 'hp:auto_release' "
                "AND args->>'payment_id' = :id ORDER BY id"
            ),
            {"id": str(payment_id)},
        )
        return [r[0] for r in rows]


async def test_a_chargeback_won_after_completion_reschedules_the_automatic_release(
    api: Api, runtime: Runtime
) -> None:
    _client, worker, payment = await api.held_payment("100.00")
    r = await api.client.post(
        f"/api/v1/bookings/{payment['booking_id']}/complete", headers=worker.headers
    )
    assert r.status_code == 200, r.text
    window = timedelta(hours=float(runtime.settings.auto_release_hours))
    dispute = {
        "id": "du_won1",
        "object": "dispute",
        "amount": 10000,
        "currency": "usd",
        "payment_intent": payment["stripe_payment_id"],
        "reason": "fraudulent",
        "status": "needs_response",
    }
    await deliver(api, "charge.dispute.created", dispute)
    assert (await payment_row(runtime, payment["id"])).status == "disputed"
    # The dispute outlasts the release window: its deadline passes while frozen.
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Payment, payment["id"])
        booking = await session.get(Booking, payment["booking_id"])
        assert row is not None and booking is not None and row.auto_release_at is not None
        booking.completed_at = now() - window - timedelta(hours=1)
        row.auto_release_at = now() - timedelta(hours=1)

    before = now()
    await deliver(api, "charge.dispute.closed", {**dispute, "status": "won"})
    held = await payment_row(runtime, payment["id"])
    assert held.status == "held" and held.auto_release_at is not None
    assert before + window <= held.auto_release_at <= now() + window
    assert (await auto_release_jobs(runtime, payment["id"]))[-1] == held.auto_release_at
    # Not released at once by the sweep of overdue releases: the client has the window.
    swept = await background.release_overdue(
        runtime, now=now() + timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    )
    assert swept.released == []
    assert (await payment_row(runtime, payment["id"])).status == "held"
