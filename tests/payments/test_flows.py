"""SPEC.md's card payment flows end to end over HTTP, on the built-in simulators, with exact
amounts. The ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, eventually
from tests.payments.flows import payment_of


async def test_card_payment_escrow_release_and_payout(api: Api, worker: None) -> None:
    client, pro, payment = await api.held_payment("150.00")
    assert payment["amount"] == "150.00"
    assert payment["platform_fee"] == "7.50"
    assert payment["worker_amount"] == "142.50"
    assert payment["stripe_payment_id"].startswith("pi_")
    assert payment["capture_by"] is not None

    earnings = await api.earnings(pro)
    assert earnings["pending_balance"] == "142.50"
    assert earnings["available_balance"] == "0.00"

    r = await api.post(f"/bookings/{payment['booking_id']}/complete", pro)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (await payment_of(api, client, payment["id"]))["auto_release_at"] is not None

    r = await api.post(f"/payments/{payment['id']}/release", pro)
    assert r.status_code == 403  # only the client releases
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    released = r.json()
    assert released["status"] == "released"
    assert released["capture_by"] is None
    assert released["auto_release_at"] is None

    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "142.50"
    assert earnings["pending_balance"] == "0.00"
    assert earnings["total_earned"] == "142.50"

    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": "acct_1Worker"},
        headers=pro.headers,
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": 100, "payment_method": "stripe"}
    )
    assert r.status_code == 201, r.text
    payout = r.json()
    assert payout["status"] == "pending" and payout["amount"] == "100.00"
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "42.50"
    assert earnings["pending_payouts"] == "100.00"

    admin = await api.admin()
    r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processing"

    async def completed() -> dict[str, Any] | None:
        items = (await api.get("/payments/payouts", pro))["items"]
        return items[0] if items[0]["status"] == "completed" else None

    done = await eventually(completed)
    assert done["stripe_transfer_id"].startswith("tr_")
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "42.50"
    assert earnings["total_paid_out"] == "100.00"
    assert earnings["pending_payouts"] == "0.00"
    assert earnings["total_earned"] == "142.50"

    history = (await api.get("/payments/transactions", pro))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in history] == [
        ("payout", "-100.00"),
        ("earning", "142.50"),
    ]
    client_history = (await api.get("/payments/transactions", client))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in client_history] == [
        ("payment", "-150.00")
    ]
    fees = (await api.get("/payments/transactions", admin))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in fees] == [("fee", "7.50")]
    summary = await api.get("/payments/summary/client", client, currency="USD")
    assert summary == {
        "currency": "USD",
        "payment_count": 1,
        "total_spent": "150.00",
        "total_held": "0.00",
        "total_released": "150.00",
        "total_refunded": "0.00",
    }


async def test_declined_card_fails_the_payment_and_allows_another(api: Api) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "80.00")
    r = await api.stripe_payment(client, booking, "pm_card_chargeDeclined")
    assert r.status_code == 402
    assert "declined" in r.json()["detail"].lower()
    payments = (await api.get("/payments/", client))["items"]
    assert [p["status"] for p in payments] == ["failed"]
    assert (await api.get(f"/bookings/{booking['id']}", client))["status"] == "pending_payment"
    admin = await api.admin()
    alerts = (await api.get("/admin/alerts", admin))["items"]
    assert [a["kind"] for a in alerts] == ["payment_failed"]

    r = await api.stripe_payment(client, booking, "pm_card_visa")
    assert r.status_code == 201 and r.json()["status"] == "held"


async def test_three_d_secure_needs_the_extra_confirmation(api: Api) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "60.00")
    r = await api.stripe_payment(client, booking, "pm_card_authenticationRequired")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["client_secret"]
    confirm = {"payment_intent_id": created["stripe_payment_id"], "booking_id": booking["id"]}
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 402 and "authentication" in r.json()["detail"]

    r = await api.client.post(
        f"/api/v1/simulator/stripe/payment_intents/{created['stripe_payment_id']}/authenticate",
        json={"succeed": True},
    )
    assert r.status_code == 200, r.text
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held"


async def test_card_confirmed_in_the_browser_arrives_by_signed_webhook(
    api: Api, worker: None
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "42.00")
    r = await api.stripe_payment(client, booking, payment_method=None)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["client_secret"].startswith(
        created["stripe_payment_id"]
    )

    r = await api.client.post(
        f"/api/v1/simulator/stripe/payment_intents/{created['stripe_payment_id']}/confirm",
        json={"payment_method": "pm_card_visa"},
    )
    assert r.status_code == 200, r.text

    async def held() -> bool:
        return (await payment_of(api, client, created["id"]))["status"] == "held"

    await eventually(held)
    admin = await api.admin()
    deliveries = (await api.get("/admin/webhooks", admin))["items"]
    assert [(d["event_type"], d["status"]) for d in deliveries] == [
        ("payment_intent.amount_capturable_updated", "processed")
    ]
