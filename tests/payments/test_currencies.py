"""Currencies the providers accept, through the API: what a provider would refuse is a 400
naming its rule, with nothing written and no provider called; balances and client
summaries in every currency, never converted (USD, JPY, KWD, to the minor unit)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from handwork_payments.models import (
    LedgerAccount,
    Payment,
    PaymentRefund,
    RecurringSchedule,
    SimulatedObject,
)
from handwork_payments.runtime import Runtime
from tests.helpers import Api, Party

URLS = {"return_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


async def written(runtime: Runtime) -> tuple[int, ...]:
    """Rows a refused request must not add: payments, refunds, ledger accounts, schedules,
    and every object either simulator holds (a provider call leaves at least its key)."""
    async with runtime.sessions() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(table))
            for table in (Payment, PaymentRefund, LedgerAccount, SimulatedObject, RecurringSchedule)
        ]
    return tuple(int(c or 0) for c in counts)


async def pay(
    api: Api, client: Party, worker: Party, amount: str, currency: str, method: str = "stripe"
) -> Any:
    booking = await api.booking(client, worker, amount, currency)
    if method == "stripe":
        return await api.stripe_payment(client, booking)
    body = {"booking_id": booking["id"], "amount": amount, "currency": currency, **URLS}
    return await api.post("/payments/paypal/create", client, body)


async def test_payments_a_provider_would_refuse_are_400s_naming_the_rule(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    before = await written(api.runtime)
    refusals = [
        ("12.340", "KWD", "paypal", "PayPal does not accept KWD"),
        ("123.50", "HUF", "paypal", "PayPal takes HUF in whole units only"),
        ("0.49", "USD", "stripe", "Stripe needs at least 0.50 USD"),
        ("49", "JPY", "stripe", "Stripe needs at least 50 JPY"),
        ("12.345", "KWD", "stripe", "KWD amounts on Stripe must end in 0"),
    ]
    for amount, currency, method, rule in refusals:
        r = await pay(api, client, worker, amount, currency, method)
        assert (r.status_code, r.json()) == (400, {"detail": rule}), (amount, currency, method)
    # No payment, no account, and neither provider asked anything.
    assert await written(api.runtime) == before
    # The same amounts where the provider takes them.
    assert (await pay(api, client, worker, "0.50", "USD")).json()["status"] == "held"
    assert (await pay(api, client, worker, "12.350", "KWD")).json()["status"] == "held"
    r = await pay(api, client, worker, "123", "HUF", "paypal")
    assert r.status_code == 201 and r.json()["amount"] == "123.00", r.text


async def test_a_refund_stripe_would_refuse_is_a_400(api: Api) -> None:
    _, worker, payment = await api.held_payment("12.340", "KWD")
    before = await written(api.runtime)
    body = {"payment_id": payment["id"], "amount": "1.235", "reason": "r"}
    r = await api.post("/payments/refund", worker, body)
    assert (r.status_code, r.json()) == (400, {"detail": "KWD amounts on Stripe must end in 0"})
    assert await written(api.runtime) == before
    r = await api.post("/payments/refund", worker, {**body, "amount": "1.230"})
    assert r.status_code == 200 and r.json()["refunded_amount"] == "1.230", r.text


async def test_payouts_only_from_a_balance_the_provider_pays_out(api: Api) -> None:
    client, worker, payment = await api.held_payment("12.340", "KWD")
    await api.post(f"/payments/{payment['id']}/release", client)
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": f"acct_1Cur{worker.id}", "paypal_email": "w@example.com"},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    before = await written(api.runtime)
    for amount, currency, method, rule in [
        ("1.000", "KWD", "paypal", "PayPal does not pay out KWD"),
        ("1.00", "EUR", "stripe", "You have no EUR balance to pay out"),
        ("1.00", "USD", "paypal", "You have no USD balance to pay out"),
    ]:
        body = {"amount": amount, "currency": currency, "payment_method": method}
        r = await api.post("/payments/payouts/request", worker, body)
        assert (r.status_code, r.json()) == (400, {"detail": rule}), body
    assert await written(api.runtime) == before
    # The worker's 11.723 KWD (12.340 less 5%) goes out in KWD, odd fils and all.
    body = {"amount": "11.723", "currency": "KWD", "payment_method": "stripe"}
    r = await api.post("/payments/payouts/request", worker, body)
    assert r.status_code == 201 and r.json()["amount"] == "11.723", r.text


async def test_balances_and_summaries_in_every_currency(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    other = await api.user("worker")
    assert (await api.get("/payments/balances", worker)) == {"items": []}
    assert (await api.get("/payments/summary/client", client)) == {"items": []}
    usd = (await pay(api, client, worker, "150.00", "USD")).json()
    await pay(api, client, worker, "10000", "JPY")  # held: the worker's 9500 yen pending
    kwd = (await pay(api, client, worker, "12.340", "KWD")).json()
    await pay(api, client, other, "7.000", "KWD")  # another worker's: not this one's
    for payment in (usd, kwd):
        r = await api.post(f"/payments/{payment['id']}/release", client)
        assert r.status_code == 200, r.text
    refund = {"payment_id": usd["id"], "amount": "50.00", "reason": "r"}
    r = await api.post("/payments/refund", worker, refund)
    assert r.status_code == 200, r.text
    await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": f"acct_1Bal{worker.id}"},
        headers=worker.headers,
    )
    body = {"amount": "1.000", "currency": "KWD", "payment_method": "stripe"}
    assert (await api.post("/payments/payouts/request", worker, body)).status_code == 201

    balances = await api.get("/payments/balances", worker)
    assert balances == {
        "items": [
            {
                "currency": "JPY",
                "available_balance": "0",
                "available_soon": "0",
                "pending_balance": "9500",
                "total_earned": "0",
                "total_paid_out": "0",
                "pending_payouts": "0",
            },
            {
                # 11.723 released (12.340 less 5%), 1.000 of it asked for.
                "currency": "KWD",
                "available_balance": "10.723",
                "available_soon": "0.000",
                "pending_balance": "0.000",
                "total_earned": "11.723",
                "total_paid_out": "0.000",
                "pending_payouts": "1.000",
            },
            {
                # 142.50 released, 47.50 of it taken back by the 50.00 refund.
                "currency": "USD",
                "available_balance": "95.00",
                "available_soon": "0.00",
                "pending_balance": "0.00",
                "total_earned": "95.00",
                "total_paid_out": "0.00",
                "pending_payouts": "0.00",
            },
        ]
    }
    # Each item is what the single-currency form answers.
    for item in balances["items"]:
        assert await api.earnings(worker, item["currency"]) == item

    summaries = await api.get("/payments/summary/client", client)
    assert summaries == {
        "items": [
            {
                "currency": "JPY",
                "payment_count": 1,
                "total_spent": "10000",
                "total_held": "10000",
                "total_released": "0",
                "total_refunded": "0",
            },
            {
                "currency": "KWD",
                "payment_count": 2,
                "total_spent": "19.340",
                "total_held": "7.000",
                "total_released": "12.340",
                "total_refunded": "0.000",
            },
            {
                "currency": "USD",
                "payment_count": 1,
                "total_spent": "100.00",
                "total_held": "0.00",
                "total_released": "100.00",
                "total_refunded": "50.00",
            },
        ]
    }
    for item in summaries["items"]:
        assert await api.get("/payments/summary/client", client, currency=item["currency"]) == item


async def test_balances_with_a_payout_delay_per_currency(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.runtime.settings, "payout_delay_hours", 48)
    client, worker = await api.user("client"), await api.user("worker")
    for amount, currency in (("10000", "JPY"), ("12.340", "KWD")):
        payment = (await pay(api, client, worker, amount, currency)).json()
        r = await api.post(f"/payments/{payment['id']}/release", client)
        assert r.status_code == 200, r.text
    # The KWD payment refunded in part within the delay: 1.230, of which the worker's
    # 1.169 (1.230 less its 0.061 of the fee) comes out of what is still in the delay.
    kwd = {"payment_id": payment["id"], "amount": "1.230", "reason": "r"}
    assert (await api.post("/payments/refund", worker, kwd)).status_code == 200
    items = (await api.get("/payments/balances", worker))["items"]
    figures = [(i["currency"], i["available_balance"], i["available_soon"]) for i in items]
    assert figures == [("JPY", "0", "9500"), ("KWD", "0.000", "10.554")]
    assert [i["total_earned"] for i in items] == ["9500", "10.554"]
    for item in items:
        assert await api.earnings(worker, item["currency"]) == item


async def test_a_schedule_stripe_would_refuse_is_refused_at_creation(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    before = await written(api.runtime)
    body = {
        "worker_id": worker.id,
        "title": "Weekly clean",
        "amount": "12.345",
        "currency": "KWD",
        "interval": "weekly",
        "starts_at": "2027-02-01T09:00:00Z",
        "payment_method": "stripe",
    }
    r = await api.post("/recurring-schedules", client, body)
    assert (r.status_code, r.json()) == (400, {"detail": "KWD amounts on Stripe must end in 0"})
    body = {**body, "amount": "0.40", "currency": "USD"}
    r = await api.post("/recurring-schedules", client, body)
    assert (r.status_code, r.json()) == (400, {"detail": "Stripe needs at least 0.50 USD"})
    body = {**body, "amount": "12.340", "currency": "KWD", "payment_method": "paypal"}
    r = await api.post("/recurring-schedules", client, body)
    assert (r.status_code, r.json()) == (400, {"detail": "PayPal does not accept KWD"})
    assert await written(api.runtime) == before


async def test_a_milestone_stripe_could_not_refund_is_refused_at_payment(api: Api) -> None:
    """Each milestone may be refunded on its own, so on Stripe a KWD milestone must end in
    0 like any KWD amount: refused when the booking is paid (nothing written), not later
    at the refund of that milestone (the state machine found such a refund refused)."""
    client, worker = await api.user("client"), await api.user("worker")
    body = {
        "worker_id": worker.id,
        "title": "Two rooms",
        "amount": "10.020",
        "currency": "KWD",
        "milestones": [
            {"title": "First room", "amount": "4.005"},
            {"title": "Second room", "amount": "6.015"},
        ],
    }
    r = await api.post("/bookings", client, body)
    assert r.status_code == 201, r.text
    booking = r.json()
    before = await written(api.runtime)
    r = await api.stripe_payment(client, booking)
    assert (r.status_code, r.json()) == (
        400,
        {"detail": "Milestone 'First room': KWD amounts on Stripe must end in 0"},
    )
    assert await written(api.runtime) == before
    # In parts Stripe takes, the same booking amount is paid.
    body["milestones"] = [
        {"title": "First room", "amount": "4.000"},
        {"title": "Second room", "amount": "6.020"},
    ]
    r = await api.post("/bookings", client, body)
    paid = await api.stripe_payment(client, r.json())
    assert (paid.status_code, paid.json()["status"], paid.json()["amount"]) == (
        201,
        "held",
        "10.020",
    )
