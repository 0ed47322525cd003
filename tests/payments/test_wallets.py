"""Card wallets (Apple Pay, Google Pay, Link) end to end over HTTP on the Stripe simulator:
each wallet's test payment method holds, releases, refunds and declines with exact amounts,
and the payment records the wallet from the charge's `card.wallet` when it is held. The
ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from handwork_payments.providers.simulated.stripe import SimulatedStripe
from tests.faults import payment_row, simulator
from tests.helpers import Api, eventually
from tests.payments.flows import payment_of

# wallet -> (its authorised test payment method, its declined one)
WALLETS = {
    "apple_pay": ("pm_card_visa_apple_pay", "pm_card_apple_pay_chargeDeclined"),
    "google_pay": ("pm_card_visa_google_pay", "pm_card_google_pay_chargeDeclined"),
    "link": ("pm_card_link", "pm_card_link_chargeDeclined"),
}
each_wallet = pytest.mark.parametrize("wallet", sorted(WALLETS))


def stripe_simulator(api: Api) -> SimulatedStripe:
    found = simulator(api.runtime)
    assert isinstance(found, SimulatedStripe)
    return found


@each_wallet
async def test_wallet_payment_is_held_released_and_paid_to_the_worker(
    api: Api, wallet: str
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "150.00")
    r = await api.stripe_payment(client, booking, WALLETS[wallet][0])
    assert r.status_code == 201, r.text
    held = r.json()
    assert (held["status"], held["wallet"], held["stablecoin"]) == ("held", wallet, False)
    assert held["capture_by"] is not None  # an authorisation, like any card
    assert (await api.earnings(pro))["pending_balance"] == "142.50"

    r = await api.post(f"/payments/{held['id']}/release", client)
    assert r.status_code == 200, r.text
    released = r.json()
    assert (released["status"], released["wallet"]) == ("released", wallet)
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["pending_balance"]) == ("142.50", "0.00")
    row = await payment_row(api.runtime, held["id"])
    # Captured at release: 150.00, Stripe's 2.9% + 30c = 4.65.
    assert (row.captured_amount, row.provider_fee) == (15000, 465)


@each_wallet
async def test_wallet_payment_refunded_in_part_then_in_full(api: Api, wallet: str) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "80.00")
    held = (await api.stripe_payment(client, booking, WALLETS[wallet][0])).json()
    assert held["wallet"] == wallet

    r = await api.post(
        "/payments/refund", pro, {"payment_id": held["id"], "amount": "30.00", "reason": "Less"}
    )
    assert r.status_code == 200, r.text
    part = r.json()
    assert (part["status"], part["refunded_amount"]) == ("held", "30.00")
    # 80.00 at 5%: fee 4.00, worker 76.00; the worker part of 30.00 is 28.50.
    assert (await api.earnings(pro))["pending_balance"] == "47.50"

    r = await api.post("/payments/refund", pro, {"payment_id": held["id"], "reason": "All"})
    assert r.status_code == 200, r.text
    full = r.json()
    assert (full["status"], full["refunded_amount"], full["wallet"]) == (
        "refunded",
        "80.00",
        wallet,
    )
    assert (await api.earnings(pro))["pending_balance"] == "0.00"
    # Refunded before release: nothing was captured, the whole authorisation is voided, so
    # Stripe never took the wallet payer's money.
    assert (await payment_row(api.runtime, held["id"])).captured_amount == 0
    intent = await stripe_simulator(api).intent_object(held["stripe_payment_id"])
    assert (intent["status"], intent["amount_received"]) == ("canceled", 0)


@each_wallet
async def test_declined_wallet_card_fails_the_payment(api: Api, wallet: str) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "42.00")
    r = await api.stripe_payment(client, booking, WALLETS[wallet][1])
    assert r.status_code == 402, r.text
    assert "card_declined" in r.json()["detail"]
    (failed,) = (await api.get("/payments/", client))["items"]
    assert (failed["status"], failed["amount"], failed["wallet"]) == ("failed", "42.00", None)
    assert (await api.earnings(pro))["pending_balance"] == "0.00"

    # The payer tries again with the same wallet's good card: a new payment, held.
    r = await api.stripe_payment(client, booking, WALLETS[wallet][0])
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["wallet"]) == ("held", wallet)


async def test_card_without_wallet_records_none(api: Api) -> None:
    client, _, payment = await api.held_payment("20.00")
    assert payment["wallet"] is None
    assert (await payment_of(api, client, payment["id"]))["wallet"] is None


async def test_wallet_confirmed_in_the_browser_is_recorded_at_confirm(api: Api) -> None:
    """Stripe.js confirms the intent with the wallet (Payment Request Button / Express
    Checkout Element); our confirm reads the charge's wallet when it holds the payment."""
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "64.00")
    r = await api.stripe_payment(client, booking, None)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["status"], created["wallet"]) == ("pending", None)
    intent = created["stripe_payment_id"]
    r = await api.post(
        f"/simulator/stripe/payment_intents/{intent}/confirm",
        None,
        {"payment_method": "pm_card_visa_google_pay"},
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/payments/stripe/confirm",
        client,
        {"payment_intent_id": intent, "booking_id": booking["id"]},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["wallet"], r.json()["amount"]) == (
        "held",
        "google_pay",
        "64.00",
    )


async def test_wallet_held_by_stripes_event_alone(api: Api, worker: None) -> None:
    """The payer closes the page after Stripe.js confirmed with Link: the
    amount_capturable_updated event holds it, and the wallet comes from the intent read."""
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "33.00")
    created = (await api.stripe_payment(client, booking, None)).json()
    r = await api.post(
        f"/simulator/stripe/payment_intents/{created['stripe_payment_id']}/confirm",
        None,
        {"payment_method": "pm_card_link"},
    )
    assert r.status_code == 200, r.text

    async def held() -> dict[str, Any] | None:
        found = await payment_of(api, client, created["id"])
        return found if found["status"] == "held" else None

    payment = await eventually(held)
    assert (payment["wallet"], payment["amount"]) == ("link", "33.00")
    assert (await api.earnings(pro))["pending_balance"] == "31.35"  # 33.00 less 5% (1.65)
