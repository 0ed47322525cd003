"""The webhook inbox under repetition, failure and disorder: a delivery sent 50 times at once
is stored and applied once; a failing one backs off (the next attempt visible on it), is
dead-lettered with an alert at the limit and replayed by an admin; events of one payment
delivered in any order end in the state the ordered delivery reaches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from handwork_payments.kit.clock import now
from handwork_payments.models import DeliveryStatus, JournalEntry, WebhookDelivery
from handwork_payments.providers.base import PaymentDeclinedError
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.conftest import make_settings
from tests.faults import audit_actions, payment_row, simulator
from tests.helpers import Api, Party, eventually

STRIPE_WEBHOOK = "/api/v1/payments/webhooks/stripe"
Delivery = tuple[bytes, dict[str, str]]


async def pending_payment(api: Api, client: Party, worker: Party, amount: str) -> dict[str, Any]:
    """A Stripe payment whose intent waits for the payer's card (Stripe.js)."""
    booking = await api.booking(client, worker, amount)
    r = await api.stripe_payment(client, booking, payment_method=None)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    result: dict[str, Any] = r.json()
    return result


async def authorised_in_browser(api: Api, payment: dict[str, Any]) -> Delivery:
    """The payer confirms with a card; Stripe's `amount_capturable_updated` event."""
    sim = simulator(api.runtime)
    await sim.client_confirm(payment["stripe_payment_id"], "pm_card_visa")
    intent = await sim.intent_object(payment["stripe_payment_id"])
    return sim.stripe_event("payment_intent.amount_capturable_updated", intent)


async def hold_entries(runtime: Runtime, payment_id: int) -> int:
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.key == f"payment-{payment_id}-hold")
        )
        return int(count or 0)


async def test_the_same_delivery_sent_50_times_at_once_is_applied_once(
    api: Api, runtime: Runtime, worker: None
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    payment = await pending_payment(api, client, pro, "75.00")
    body, headers = await authorised_in_browser(api, payment)

    answers = await asyncio.gather(
        *(api.client.post(STRIPE_WEBHOOK, content=body, headers=headers) for _ in range(50))
    )
    assert {r.status_code for r in answers} == {200}
    assert sorted(r.json()["duplicate"] for r in answers) == [False] + [True] * 49

    async def held() -> bool:
        return (await payment_row(runtime, payment["id"])).status == "held"

    await eventually(held)
    async with runtime.sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        jobs = await session.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'hp:process_webhook'")
        )
    assert stored == 1 and jobs == 1
    assert await hold_entries(runtime, payment["id"]) == 1
    actions = await audit_actions(runtime, "payment", payment["id"])
    assert actions.count("payment.held") == 1
    assert (await api.earnings(pro))["pending_balance"] == "71.25"


@pytest.fixture
async def flaky(runtime: Runtime, database_url: str) -> AsyncIterator[Runtime]:
    """WEBHOOK_MAX_ATTEMPTS=3, retries 10 s apart at first."""
    built = Runtime.build(
        make_settings(database_url, webhook_max_attempts=3, webhook_retry_base_seconds=10),
        database_url,
    )
    yield built
    await built.aclose()


async def scheduled_retries(runtime: Runtime, delivery_id: int) -> list[Any]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT scheduled_at FROM procrastinate_jobs WHERE task_name = "
                "'hp:process_webhook' AND args->>'delivery_id' = :id "
                "AND scheduled_at IS NOT NULL ORDER BY id"
            ),
            {"id": str(delivery_id)},
        )
        return [row[0] for row in rows]


async def test_a_failing_delivery_backs_off_is_dead_lettered_with_an_alert_and_replayed(
    api: Api, runtime: Runtime, flaky: Runtime
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    payment = await pending_payment(api, client, pro, "40.00")
    body, headers = await authorised_in_browser(api, payment)
    r = await api.client.post(STRIPE_WEBHOOK, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["duplicate"] is False
    async with runtime.sessions() as session:
        delivery_id = await session.scalar(select(WebhookDelivery.id))
    assert delivery_id is not None
    # Applying it asks Stripe for the intent, and Stripe keeps failing.
    await simulator(runtime).inject_fault("get_hold", "error", times=3)

    seen = []
    for attempt, delay in ((1, 10), (2, 20)):
        before = now()
        row = await webhooks.process(flaky, delivery_id)
        assert row is not None and row.status == DeliveryStatus.FAILED
        assert row.attempts == attempt and "Simulated failure" in (row.last_error or "")
        assert row.next_attempt_at is not None
        wait = row.next_attempt_at - before
        assert timedelta(seconds=delay) <= wait < timedelta(seconds=delay + 5)
        seen.append(row.next_attempt_at)
    # Each retry is a job scheduled at the time the delivery shows.
    assert await scheduled_retries(runtime, delivery_id) == seen

    row = await webhooks.process(flaky, delivery_id)
    assert row is not None and row.status == DeliveryStatus.DEAD
    assert row.attempts == 3 and row.next_attempt_at is None
    assert await scheduled_retries(runtime, delivery_id) == seen  # no more retries
    assert (await webhooks.process(flaky, delivery_id)) is not None  # a stray job: no-op
    assert (await payment_row(runtime, payment["id"])).status == "pending"

    admin = await api.admin()
    dead = (await api.get("/admin/webhooks", admin, status="dead"))["items"]
    assert [(d["id"], d["attempts"], d["next_attempt_at"]) for d in dead] == [
        (delivery_id, 3, None)
    ]
    alerts = (await api.get("/admin/alerts", admin))["items"]
    assert [(a["kind"], a["object_type"], a["object_id"]) for a in alerts] == [
        ("webhook_dead", "webhook", delivery_id)
    ]

    r = await api.post(f"/admin/webhooks/{delivery_id}/replay", admin)
    assert r.status_code == 200 and r.json()["status"] == "received", r.text
    row = await webhooks.process(flaky, delivery_id)
    assert row is not None and row.status == DeliveryStatus.PROCESSED
    assert (await payment_row(runtime, payment["id"])).status == "held"
    assert (await api.get("/admin/webhooks", admin, status="dead"))["items"] == []


async def test_a_late_authorisation_after_release_changes_nothing(
    api: Api, runtime: Runtime
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    payment = await pending_payment(api, client, pro, "40.00")
    body, headers = await authorised_in_browser(api, payment)
    stored, _ = await webhooks.receive(runtime, "stripe", headers, body)
    assert stored is not None
    await webhooks.process(runtime, stored.id)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    # The same news again, as a new event (Stripe re-sends after an outage).
    sim = simulator(runtime)
    late_body, late_headers = sim.stripe_event(
        "payment_intent.amount_capturable_updated",
        {**(await sim.intent_object(payment["stripe_payment_id"])), "status": "requires_capture"},
    )
    late, new = await webhooks.receive(runtime, "stripe", late_headers, late_body)
    assert new and late is not None
    processed = await webhooks.process(runtime, late.id)
    assert processed is not None and processed.status == DeliveryStatus.PROCESSED
    assert (await payment_row(runtime, payment["id"])).status == "released"
    assert await hold_entries(runtime, payment["id"]) == 1
    assert (await api.earnings(pro))["available_balance"] == "38.00"


# --- any order of delivery ------------------------------------------------------------------


async def declined_then_authorised(api: Api, parties: tuple[Party, Party]) -> tuple[int, list]:
    """A payment whose payer's first card is declined and second authorised, and every
    event Stripe sends about it, in the order it sends them."""
    sim = simulator(api.runtime)
    payment = await pending_payment(api, *parties, "30.00")
    intent_id = payment["stripe_payment_id"]
    events: list[Delivery] = [
        sim.stripe_event("payment_intent.created", await sim.intent_object(intent_id))
    ]
    with pytest.raises(PaymentDeclinedError):
        await sim.client_confirm(intent_id, "pm_card_chargeDeclined")
    failed = await sim.intent_object(intent_id)
    events.append(sim.stripe_event("payment_intent.payment_failed", failed))
    events.append(sim.stripe_event("charge.failed", await sim.object_data(failed["latest_charge"])))
    await sim.client_confirm(intent_id, "pm_card_visa")
    authorised = await sim.intent_object(intent_id)
    events.append(sim.stripe_event("payment_intent.amount_capturable_updated", authorised))
    events.append(
        sim.stripe_event("charge.succeeded", await sim.object_data(authorised["latest_charge"]))
    )
    return int(payment["id"]), events


async def deliver(runtime: Runtime, events: list[Delivery]) -> None:
    for body, headers in events:
        stored, new = await webhooks.receive(runtime, "stripe", headers, body)
        assert new and stored is not None
        processed = await webhooks.process(runtime, stored.id)
        assert processed is not None and processed.status == DeliveryStatus.PROCESSED, (
            processed and processed.last_error
        )


async def state(runtime: Runtime, payment_id: int) -> tuple[Any, ...]:
    row = await payment_row(runtime, payment_id)
    return (
        row.status,
        row.hold_kind,
        row.amount,
        row.captured_amount,
        row.refunded_amount,
        row.capture_by is not None,
        await hold_entries(runtime, payment_id),
    )


# Per test run (the tables are emptied between tests): the parties, and the state the
# ordered delivery reaches.
_run: dict[str, Any] = {}


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.permutations(range(5)))
async def test_a_payments_events_in_any_order_end_in_the_ordered_state(
    api: Api, runtime: Runtime, order: list[int]
) -> None:
    if _run.get("api") is not api:
        _run.clear()
        _run["api"] = api
        _run["parties"] = (await api.user("client"), await api.user("worker"))
        in_order, events = await declined_then_authorised(api, _run["parties"])
        await deliver(runtime, events)
        _run["expected"] = await state(runtime, in_order)
    expected = _run["expected"]
    assert expected[0] == "held" and expected[6] == 1

    shuffled, events = await declined_then_authorised(api, _run["parties"])
    await deliver(runtime, [events[i] for i in order])
    assert await state(runtime, shuffled) == expected
