"""Recurring schedules set up through the API, as a client and Stripe.js (or the PayPal
payer) would."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from handwork_payments.models import Payment, RecurringRun, SimulatedObject
from handwork_payments.runtime import Runtime
from tests.helpers import Api, Party


async def active_schedule(
    api: Api,
    client: Party,
    worker: Party,
    *,
    starts_at: datetime,
    interval: str = "monthly",
    amount: str = "150.00",
    currency: str = "USD",
    occurrences: int | None = None,
    card: str = "pm_card_visa",
) -> dict[str, Any]:
    """A schedule whose card the payer saved (the simulator's confirmSetup), activated
    by reading it."""
    body: dict[str, Any] = {
        "worker_id": worker.id,
        "title": "Weekly clean",
        "amount": amount,
        "currency": currency,
        "interval": interval,
        "starts_at": starts_at.isoformat(),
        "payment_method": "stripe",
    }
    if occurrences is not None:
        body["occurrences"] = occurrences
    r = await api.post("/recurring-schedules", client, body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending_setup", created
    setup = created["setup"]
    assert setup["setup_intent_id"].startswith("seti_") and setup["client_secret"], setup
    r = await api.post(
        f"/simulator/stripe/setup_intents/{setup['setup_intent_id']}/confirm",
        None,
        {"payment_method": card},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    schedule: dict[str, Any] = await api.get(f"/recurring-schedules/{created['id']}", client)
    assert schedule["status"] == "active", schedule
    return schedule


async def active_paypal_schedule(
    api: Api,
    client: Party,
    worker: Party,
    *,
    starts_at: datetime,
    amount: str = "150.00",
    currency: str = "USD",
    declines: bool = False,
) -> dict[str, Any]:
    """A schedule paid with PayPal: the payer approves saving PayPal at the approval URL
    (the simulator's agreement page; `declines`: every later charge declined), comes back,
    and reading the schedule saves the payment token and activates it."""
    body: dict[str, Any] = {
        "worker_id": worker.id,
        "title": "Weekly clean",
        "amount": amount,
        "currency": currency,
        "interval": "monthly",
        "starts_at": starts_at.isoformat(),
        "payment_method": "paypal",
    }
    r = await api.post("/recurring-schedules", client, body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending_setup", created
    url = urlsplit(created["setup"]["approval_url"])
    assert url.path == "/api/v1/simulator/paypal/agreements/approve", url
    query = f"{url.query}&declines={'true' if declines else 'false'}"
    r = await api.client.get(f"{url.path}?{query}")
    assert r.status_code == 200, r.text
    schedule: dict[str, Any] = await api.get(f"/recurring-schedules/{created['id']}", client)
    assert schedule["status"] == "active", schedule
    return schedule


async def runs_of(runtime: Runtime, schedule_id: int) -> list[RecurringRun]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(RecurringRun)
            .where(RecurringRun.schedule_id == schedule_id)
            .order_by(RecurringRun.number)
        )
        return list(rows.all())


async def payments_of(runtime: Runtime, schedule_id: int) -> list[Payment]:
    """Every payment (failed ones too) of the schedule's bookings, oldest first."""
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(Payment)
            .join(RecurringRun, RecurringRun.booking_id == Payment.booking_id)
            .where(RecurringRun.schedule_id == schedule_id)
            .order_by(Payment.id)
        )
        return list(rows.all())


async def intents(runtime: Runtime) -> int:
    """PaymentIntents the Stripe simulator holds: one per charge attempt."""
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(SimulatedObject)
            .where(SimulatedObject.provider == "stripe", SimulatedObject.kind == "payment_intent")
        )
        return int(count or 0)
