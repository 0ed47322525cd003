"""Recurring schedules paid with PayPal (Vault v3) in the PayPal simulator: the payer saves
PayPal once, each occurrence is an order paid with the saved payment token and held in
escrow through the one payment path, exactly as a one-off PayPal payment. Exact amounts;
the ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from handwork_payments.models import RecurringSchedule, SimulatedObject
from handwork_payments.providers.simulated import SimulatedPayPal
from handwork_payments.recurring.runs import run_due
from handwork_payments.runtime import Runtime
from tests.faults import simulator
from tests.helpers import Api
from tests.recurring.flows import active_paypal_schedule, payments_of

START = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def _count(runtime: Runtime, kind: str) -> int:
    async with runtime.sessions() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(SimulatedObject)
            .where(SimulatedObject.provider == "paypal", SimulatedObject.kind == kind)
        )
        return int(found or 0)


@pytest.mark.parametrize(
    ("amount", "currency", "minor", "fee"),
    [("150.00", "USD", 15000, 750), ("15000", "JPY", 15000, 750)],
)
async def test_a_monthly_paypal_schedule_is_held_and_released_like_a_one_off_payment(
    api: Api, runtime: Runtime, amount: str, currency: str, minor: int, fee: int
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_paypal_schedule(
        api, client, worker, starts_at=START, amount=amount, currency=currency
    )
    assert schedule["setup"] == {
        "setup_intent_id": None,
        "client_secret": None,
        "approval_url": None,  # shown only while the payer has to approve
    }
    async with runtime.sessions() as session:
        row = await session.get(RecurringSchedule, schedule["id"])
    assert row is not None and row.saved_method and row.customer_id
    assert row.setup_id is not None and len(row.setup_id) == 17  # the setup token
    assert await _count(runtime, "payment_token") == 1
    moments = []
    for _ in range(3):
        shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
        moment = datetime.fromisoformat(shown["next_run_at"])
        moments.append(moment.date().isoformat())
        assert await run_due(runtime, now=moment) == 1
        assert await run_due(runtime, now=moment) == 0  # charged once
    assert moments == ["2027-01-31", "2027-02-28", "2027-03-31"]
    payments = await payments_of(runtime, schedule["id"])
    assert [
        (p.payment_method, p.status, p.currency, p.amount, p.platform_fee, p.worker_amount)
        for p in payments
    ] == [("paypal", "held", currency, minor, fee, minor - fee)] * 3
    assert all(p.paypal_payment_id and p.provider_authorization_id for p in payments)
    assert {p.hold_kind for p in payments} == {"authorized"}  # held, not captured yet
    assert await _count(runtime, "order") == 3
    # Held in escrow as any PayPal payment: the client releases it, the capture is made.
    run = (await api.get(f"/recurring-schedules/{schedule['id']}", client))["runs"][0]
    r = await api.post(f"/bookings/{run['booking_id']}/complete", worker)
    assert r.status_code == 200, r.text
    r = await api.post(f"/payments/{run['payment_id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    earnings = await api.earnings(worker, currency)
    assert earnings["total_earned"] == r.json()["worker_amount"] == amount_of(minor - fee, currency)


def amount_of(minor: int, currency: str) -> str:
    return str(minor) if currency == "JPY" else f"{minor // 100}.{minor % 100:02d}"


async def test_a_declined_paypal_payer_is_dunned_and_recovers(api: Api, runtime: Runtime) -> None:
    """The saved PayPal is declined (the order completes, its authorisation DENIED): the
    occurrence is retried a day later; the next attempt goes through."""
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_paypal_schedule(
        api, client, worker, starts_at=START, amount="80.00", declines=True
    )
    sid = schedule["id"]
    assert await run_due(runtime, now=START) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"], run["payment_id"]) == ("retrying", 1, None)
    assert "denied" in run["last_error"]
    assert (shown["status"], shown["next_run_at"]) == ("active", "2027-02-01T09:00:00Z")
    # The payer's PayPal pays again (their funding fixed at PayPal).
    async with runtime.sessions() as session:
        vault_id = await session.scalar(
            select(RecurringSchedule.saved_method).where(RecurringSchedule.id == sid)
        )
    paypal = simulator(runtime, "paypal")
    assert isinstance(paypal, SimulatedPayPal) and vault_id is not None
    await paypal.set_declines(vault_id, False)
    assert await run_due(runtime, now=START + DAY) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"], run["last_error"]) == ("held", 2, None)
    assert shown["next_run_at"] == "2027-02-28T09:00:00Z"
    payments = await payments_of(runtime, sid)
    assert [(p.status, p.amount, p.platform_fee) for p in payments] == [
        ("failed", 8000, 400),
        ("held", 8000, 400),
    ]


async def test_a_paypal_setup_whose_answer_was_lost_is_resumed_by_reading_the_schedule(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    await simulator(runtime, "paypal").inject_fault("create_setup", "timeout_after_success")
    r = await api.post(
        "/recurring-schedules",
        client,
        {
            "worker_id": worker.id,
            "title": "Garden",
            "amount": "40.00",
            "currency": "USD",
            "interval": "weekly",
            "starts_at": START.isoformat(),
            "payment_method": "paypal",
        },
    )
    assert r.status_code == 502, r.text
    (pending,) = (await api.get("/recurring-schedules", client))["items"]
    shown = await api.get(f"/recurring-schedules/{pending['id']}", client)
    assert shown["status"] == "pending_setup"
    assert "approval_session_id=" in shown["setup"]["approval_url"]
    assert await _count(runtime, "setup_token") == 1  # the lost call's token, not a second


async def test_the_approval_page_of_the_simulator(api: Api, runtime: Runtime) -> None:
    r = await api.client.get(
        "/api/v1/simulator/paypal/agreements/approve",
        params={"approval_session_id": "5C991763VB2781612"},
    )
    assert r.status_code == 404, r.text
    r = await api.client.get(
        "/api/v1/simulator/paypal/agreements/approve", params={"approval_session_id": "x\x00"}
    )
    assert r.status_code == 422, r.text
