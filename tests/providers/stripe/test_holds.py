"""Stripe for real against the double: holds, declines and lost answers, the
payment_intent.* events and charge.refunded.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import pytest
import stripe

from handwork_payments.models import Payment
from handwork_payments.webhooks import service as inbox
from tests.helpers import Api
from tests.peers.stripe_double import StripeDouble
from tests.providers.stripe.harness import (
    PREFIX,
    alerts,
    charge_of,
    deliver,
    entry_kinds,
    intent_event,
    payment_row,
    refund,
)

# The SDK hands httpx its encoded form as `data=`, which httpx 0.28 deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


# --- against the double: holds, declines, lost answers --------------------------------------


async def test_decline_code_is_in_the_402(dbl: Api, double: StripeDouble) -> None:
    api = dbl
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "30.00")

    r = await api.stripe_payment(
        client, booking, payment_method="pm_card_chargeDeclinedInsufficientFunds"
    )

    assert r.status_code == 402, r.text
    assert r.json()["detail"] == (
        "Your card has insufficient funds. (decline code: insufficient_funds)"
    )
    (failed,) = (await api.get("/payments/", client))["items"]
    assert failed["status"] == "failed"


async def test_lost_answer_on_create_is_resumed_with_the_same_key(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "55.00")
    double.hang_next("POST", "/v1/payment_intents", after_effect=True)

    r = await api.stripe_payment(client, booking)
    assert r.status_code == 502, r.text
    assert len(double.intents) == 1  # Stripe acted; its answer was lost
    (pending,) = (await api.get("/payments/", client))["items"]
    assert pending["status"] == "pending" and pending["stripe_payment_id"] is None

    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == pending["id"] and r.json()["status"] == "held"
    assert r.json()["stripe_payment_id"] == next(iter(double.intents))
    assert len(double.intents) == 1
    keys = [q.idempotency_key for q in double.requests("POST", "/v1/payment_intents")]
    assert keys == [f"{PREFIX}-payment-{pending['id']}-hold"] * 2


async def test_partial_capture_sends_what_is_left(dbl: Api, double: StripeDouble) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    admin = await api.admin()
    await refund(api, admin, payment["id"], "25.00")
    assert double.requests("POST", "/v1/refunds") == []

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    (capture,) = double.requests(
        "POST", f"/v1/payment_intents/{payment['stripe_payment_id']}/capture"
    )
    assert capture.form == {
        "amount_to_capture": "7500",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
    }
    assert capture.idempotency_key == f"{PREFIX}-payment-{payment['id']}-capture"
    # 75.00 released: fee 5.00 - 1.25 = 3.75, worker 95.00 - 23.75 = 71.25.
    assert (await api.earnings(pro))["available_balance"] == "71.25"


# --- against the double: payment_intent.* events ---------------------------------------------


async def test_capture_made_outside_a_release_is_applied_once(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("120.00")
    intent_id = payment["stripe_payment_id"]
    await dashboard.v1.payment_intents.capture_async(intent_id)

    first = await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))
    again = await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))

    assert (first.status, again.status) == ("processed", "processed")
    row = await payment_row(api, payment["id"])
    assert (row.status, row.hold_kind, row.captured_amount) == ("held", "captured", 12000)
    assert row.provider_capture_id == double.intents[intent_id]["latest_charge"]
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "provider_fee"]
    # Stripe's fee on 120.00 (2.9% + 30c), booked once though the event came twice.
    assert row.provider_fee == 378

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # Already captured: the release made no second capture call.
    assert len(double.requests("POST", f"/v1/payment_intents/{intent_id}/capture")) == 1
    # Our own capture's event after the release changes nothing.
    await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))
    assert await entry_kinds(api, payment["id"]) == [
        "payment_hold",
        "provider_fee",
        "payment_release",
    ]
    assert (await api.earnings(pro))["available_balance"] == "114.00"
    assert await alerts(api, "capture_mismatch") == []


async def test_authorised_then_payment_failed_events(dbl: Api, double: StripeDouble) -> None:
    """The browser flow by webhook: an authorisation holds a pending payment; a failure
    fails another one and cancels its intent, so the payer cannot retry on it."""
    api = dbl
    client, pro = await api.user("client"), await api.user("worker")
    held_booking = await api.booking(client, pro, "40.00")
    held = (await api.stripe_payment(client, held_booking, payment_method=None)).json()
    intent_id = held["stripe_payment_id"]
    double.intents[intent_id].update(status="requires_capture", amount_capturable=4000)
    await deliver(api, "payment_intent.amount_capturable_updated", intent_event(double, intent_id))
    assert (await payment_row(api, held["id"])).status == "held"

    failing_booking = await api.booking(client, pro, "41.00")
    failing = (await api.stripe_payment(client, failing_booking, payment_method=None)).json()
    failing_intent = failing["stripe_payment_id"]
    error = {"code": "card_declined", "message": "Your card was declined."}
    double.intents[failing_intent].update(last_payment_error=error)
    await deliver(
        api,
        "payment_intent.payment_failed",
        intent_event(double, failing_intent, last_payment_error=error),
    )
    row = await payment_row(api, failing["id"])
    assert (row.status, row.failure_reason) == ("failed", "Your card was declined.")
    assert double.intents[failing_intent]["status"] == "canceled"
    (cancel,) = double.requests("POST", f"/v1/payment_intents/{failing_intent}/cancel")
    assert cancel.idempotency_key == f"{PREFIX}-payment-{failing['id']}-void"
    assert len(await alerts(api, "payment_failed")) == 1


async def test_canceled_intent_fails_pending_and_alerts_on_a_lapsed_hold(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "35.00")
    pending = (await api.stripe_payment(client, booking, payment_method=None)).json()
    double.intents[pending["stripe_payment_id"]].update(
        status="canceled", cancellation_reason="abandoned"
    )
    await deliver(
        api,
        "payment_intent.canceled",
        intent_event(double, pending["stripe_payment_id"]),
    )
    assert (await payment_row(api, pending["id"])).status == "failed"

    # A held authorisation that Stripe let lapse: no money was ever captured.
    _, _, held = await api.held_payment("64.00")
    intent_id = held["stripe_payment_id"]
    double.expire_authorization(intent_id)
    for _ in range(2):  # a repeated event raises no second alert
        await deliver(api, "payment_intent.canceled", intent_event(double, intent_id))
    assert (await payment_row(api, held["id"])).status == "held"
    (lapsed,) = await alerts(api, "authorization_lapsed")
    assert lapsed.object_id == held["id"] and "automatic" in lapsed.message

    # What the operator does: refund it; the void finds the intent canceled already.
    admin = await api.admin()
    refunded = await refund(api, admin, held["id"])
    assert (refunded["status"], refunded["refunded_amount"]) == ("refunded", "64.00")


# --- against the double: charge.refunded --------------------------------------------------------


async def test_refund_made_in_the_dashboard_is_recorded_once(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    await api.post(f"/payments/{payment['id']}/release", client)

    await dashboard.v1.refunds.create_async({"payment_intent": intent_id, "amount": 2000})
    await deliver(api, "charge.refunded", charge_of(double, intent_id))
    await deliver(api, "charge.refunded", charge_of(double, intent_id))  # again: no effect

    row = await payment_row(api, payment["id"])
    assert (row.status, row.refunded_amount, row.refunded_fee) == ("released", 2000, 100)
    # The worker gives back 19.00 of 95.00, the fee 1.00 of 5.00.
    assert (await api.earnings(pro))["available_balance"] == "76.00"
    (external,) = await alerts(api, "external_refund")
    assert external.object_id == payment["id"]

    # Our own refund, then its charge.refunded: nothing recorded twice.
    admin = await api.admin()
    await refund(api, admin, payment["id"], "30.00")
    await deliver(api, "charge.refunded", charge_of(double, intent_id))
    row = await payment_row(api, payment["id"])
    assert row.refunded_amount == 5000
    assert charge_of(double, intent_id)["amount_refunded"] == 5000
    assert (await api.earnings(pro))["available_balance"] == "47.50"


async def test_charge_refunded_waits_for_our_call_in_flight(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    """A refund of ours that Stripe made but we have not applied yet would look like one
    made outside: the event is retried after our call is applied."""
    api = dbl
    client, _, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    await api.post(f"/payments/{payment['id']}/release", client)
    async with api.runtime.sessions() as session, session.begin():
        row = await session.get(Payment, payment["id"], with_for_update=True)
        assert row is not None
        row.provider_operation = "refund:999"
    await dashboard.v1.refunds.create_async({"payment_intent": intent_id, "amount": 1000})

    delivery = await deliver(api, "charge.refunded", charge_of(double, intent_id), retried=True)
    assert delivery.status == "failed" and "in flight" in (delivery.last_error or "")
    assert (await payment_row(api, payment["id"])).refunded_amount == 0

    async with api.runtime.sessions() as session, session.begin():
        row = await session.get(Payment, payment["id"], with_for_update=True)
        assert row is not None
        row.provider_operation = None
    await inbox.process(api.runtime, delivery.id)
    assert (await payment_row(api, payment["id"])).refunded_amount == 1000
