"""Stablecoin payments (`payment_method: "crypto"`) end to end over HTTP on the Stripe
simulator: off unless STRIPE_CRYPTO_ENABLED, USD only, captured as soon as the payer pays
(Stripe has no manual capture for crypto) and held in escrow as captured money, then
released and refunded through the same ledger, with exact amounts. The ledger's invariants
are checked after every test (conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from handwork_payments.models import HoldKind
from handwork_payments.providers.simulated.stripe import SimulatedStripe
from handwork_payments.runtime import Runtime
from tests.faults import payment_row, simulator
from tests.helpers import Api, Party, eventually
from tests.payments.flows import payment_of
from tests.payments.test_provider_fees import balances


@pytest.fixture
def crypto_enabled(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.settings, "stripe_crypto_enabled", True)


def stripe_simulator(api: Api) -> SimulatedStripe:
    found = simulator(api.runtime)
    assert isinstance(found, SimulatedStripe)
    return found


async def crypto_payment(
    api: Api, client: Party, booking: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    body = {
        "booking_id": booking["id"],
        "amount": booking["amount"],
        "currency": booking["currency"],
        "payment_method": "crypto",
    }
    r = await api.post("/payments/stripe/payment-intent", client, body)
    return r.status_code, r.json()


async def pay_in_usdc(api: Api, intent_id: str) -> dict[str, Any]:
    """The payer completes the payment at crypto.stripe.com (Stripe.js, the simulator)."""
    r = await api.post(
        f"/simulator/stripe/payment_intents/{intent_id}/confirm",
        None,
        {"payment_method": "pm_crypto_usdc"},
    )
    assert r.status_code == 200, r.text
    intent: dict[str, Any] = r.json()
    return intent


async def crypto_held(api: Api, amount: str = "150.00") -> tuple[Party, Party, dict[str, Any]]:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, amount)
    status, created = await crypto_payment(api, client, booking)
    assert status == 201, created
    await pay_in_usdc(api, created["stripe_payment_id"])
    r = await api.post(
        "/payments/stripe/confirm",
        client,
        {"payment_intent_id": created["stripe_payment_id"], "booking_id": booking["id"]},
    )
    assert r.status_code == 200, r.text
    return client, pro, r.json()


async def test_refused_unless_enabled_and_nothing_is_written(api: Api) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "150.00")
    status, body = await crypto_payment(api, client, booking)
    assert status == 400
    assert "STRIPE_CRYPTO_ENABLED" in body["detail"] and "not enabled" in body["detail"]
    assert (await api.get("/payments/", client))["items"] == []


async def test_refused_in_another_currency_than_usd(api: Api, crypto_enabled: None) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "90.00", "EUR")
    status, body = await crypto_payment(api, client, booking)
    assert status == 400
    assert "USD only" in body["detail"] and "EUR" in body["detail"]
    assert (await api.get("/payments/", client))["items"] == []


async def test_captured_at_once_held_then_released(api: Api, crypto_enabled: None) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "150.00")
    status, created = await crypto_payment(api, client, booking)
    assert status == 201, created
    assert (created["status"], created["stablecoin"], created["wallet"]) == ("pending", True, None)
    assert created["client_secret"] and created["stripe_payment_id"].startswith("pi_")
    intent = await stripe_simulator(api).intent_object(created["stripe_payment_id"])
    assert (intent["payment_method_types"], intent["capture_method"]) == (["crypto"], "automatic")

    # Before the payer has paid: nothing to hold yet.
    confirm = {"payment_intent_id": created["stripe_payment_id"], "booking_id": booking["id"]}
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 409, r.text

    paid = await pay_in_usdc(api, created["stripe_payment_id"])
    assert (paid["status"], paid["amount_received"]) == ("succeeded", 15000)
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 200, r.text
    held = r.json()
    assert (held["status"], held["amount"], held["stablecoin"]) == ("held", "150.00", True)
    assert held["capture_by"] is None  # captured money cannot lapse
    row = await payment_row(api.runtime, held["id"])
    # Captured at once: 150.00 on the platform's balance, Stripe's fee 4.65 booked now.
    assert (row.hold_kind, row.captured_amount, row.provider_fee) == (HoldKind.CAPTURED, 15000, 465)
    assert await balances(api.runtime, "USD") == {
        "provider_clearing:stripe": -14535,
        "provider_fees:stripe": -465,
    }
    assert (await api.earnings(pro))["pending_balance"] == "142.50"

    r = await api.post(f"/payments/{held['id']}/release", client)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["pending_balance"]) == ("142.50", "0.00")
    assert await balances(api.runtime, "USD") == {
        "provider_clearing:stripe": -14535,
        "provider_fees:stripe": -465,
        "platform_fee_revenue": 750,
    }


async def test_refunded_in_part_before_release_then_in_full_after(
    api: Api, crypto_enabled: None
) -> None:
    client, pro, held = await crypto_held(api, "100.00")
    admin = await api.admin()
    r = await api.post(
        "/payments/refund", pro, {"payment_id": held["id"], "amount": "40.00", "reason": "Less"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["refunded_amount"]) == ("held", "40.00")
    # Captured money: refunded at Stripe at once (to the payer's wallet, in stablecoins).
    sim = stripe_simulator(api)
    intent = await sim.intent_object(held["stripe_payment_id"])
    assert intent["amount_received"] == 10000
    # 100.00 at 5%: fee 5.00; the worker part of 40.00 is 38.00 -> 95.00 - 38.00 = 57.00.
    assert (await api.earnings(pro))["pending_balance"] == "57.00"

    r = await api.post(f"/payments/{held['id']}/release", client)
    assert r.status_code == 200, r.text
    assert (await api.earnings(pro))["available_balance"] == "57.00"

    r = await api.post("/payments/refund", admin, {"payment_id": held["id"], "reason": "All"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["status"], done["refunded_amount"]) == ("refunded", "100.00")
    refunded = await payment_of(api, client, held["id"])
    assert refunded["stablecoin"] is True
    # Stripe keeps its 2.9% + 30c (3.20) on a refund: the platform's loss on this payment.
    assert await balances(api.runtime, "USD") == {
        "provider_clearing:stripe": 320,
        "provider_fees:stripe": -320,
        "platform_fee_revenue": 0,
    }
    # The 60.00 refunded after release: 57.00 from the worker, 3.00 of the platform fee.
    assert (await api.earnings(pro))["available_balance"] == "0.00"


async def test_a_pending_card_payment_is_not_turned_into_stablecoins(
    api: Api, crypto_enabled: None
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "12.00")
    card = (await api.stripe_payment(client, booking, None)).json()
    assert (card["status"], card["stablecoin"]) == ("pending", False)
    status, body = await crypto_payment(api, client, booking)
    assert status == 409, body
    (only,) = (await api.get("/payments/", client))["items"]
    assert (only["id"], only["stablecoin"]) == (card["id"], False)


async def test_a_card_cannot_pay_a_stablecoin_intent(api: Api, crypto_enabled: None) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "10.00")
    _, created = await crypto_payment(api, client, booking)
    r = await api.post(
        f"/simulator/stripe/payment_intents/{created['stripe_payment_id']}/confirm",
        None,
        {"payment_method": "pm_card_visa"},
    )
    assert r.status_code == 409
    assert "not allowed" in r.json()["detail"]
    assert (await payment_of(api, client, created["id"]))["status"] == "pending"


async def test_stripe_event_holds_it_without_a_confirm(
    api: Api, worker: None, crypto_enabled: None
) -> None:
    """The payer never comes back from crypto.stripe.com: payment_intent.succeeded does it."""
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "25.00")
    _, created = await crypto_payment(api, client, booking)
    await pay_in_usdc(api, created["stripe_payment_id"])

    async def held() -> dict[str, Any] | None:
        found = await payment_of(api, client, created["id"])
        return found if found["status"] == "held" else None

    payment = await eventually(held)
    assert (payment["amount"], payment["capture_by"]) == ("25.00", None)
    row = await payment_row(api.runtime, created["id"])
    # 2.9% of 25.00 = 0.725 -> 0.73 (half up), + 0.30 = 1.03.
    assert (row.hold_kind, row.captured_amount, row.provider_fee) == (HoldKind.CAPTURED, 2500, 103)
