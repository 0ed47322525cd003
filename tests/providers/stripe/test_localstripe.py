"""Stripe for real against localstripe (or Stripe's test mode): escrow with manual
capture, refunds before and after release, declines as 402s, 3-D Secure, and
localstripe's own signed webhooks.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from sqlalchemy import select

from handwork_payments.app import create_app
from handwork_payments.models import PaymentRefund
from handwork_payments.worker import running_worker
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import Api, eventually
from tests.peers.localstripe_server import LocalStripe
from tests.providers.stripe.harness import (
    CARD_3DS,
    PM_3DS_STRIPE,
    PM_CHARGE_FAILS,
    PREFIX,
    Peer,
    entry_kinds,
    payment_row,
    refund,
)

# The SDK hands httpx its encoded form as `data=`, which httpx 0.28 deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


# --- against localstripe / Stripe's test mode -------------------------------------------------


async def test_card_hold_is_captured_on_release(peer_api: Api, raw: stripe.StripeClient) -> None:
    api = peer_api
    client, pro, payment = await api.held_payment("150.00")
    intent_id = payment["stripe_payment_id"]
    assert intent_id.startswith("pi_") and payment["capture_by"] is not None

    intent = await raw.v1.payment_intents.retrieve_async(intent_id)
    assert (intent.status, intent.amount, intent.currency) == ("requires_capture", 15000, "usd")
    assert intent.capture_method == "manual"
    assert intent.metadata.to_dict() == {
        "payment_id": str(payment["id"]),
        "booking_id": str(payment["booking_id"]),
        "reference": f"{PREFIX}-payment-{payment['id']}",
    }
    assert (await api.earnings(pro))["pending_balance"] == "142.50"

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released" and r.json()["capture_by"] is None

    intent = await raw.v1.payment_intents.retrieve_async(intent_id)
    assert intent.status == "succeeded"
    row = await payment_row(api, payment["id"])
    assert (row.hold_kind, row.captured_amount) == ("captured", 15000)
    assert row.provider_capture_id and row.provider_capture_id.startswith("ch_")
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["pending_balance"]) == ("142.50", "0.00")
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "payment_release"]


async def test_partial_refund_before_release_captures_less(
    peer_api: Api, raw: stripe.StripeClient
) -> None:
    api = peer_api
    client, pro, payment = await api.held_payment("100.00")
    admin = await api.admin()

    refunded = await refund(api, admin, payment["id"], "30.00")
    # Nothing at Stripe yet: the release captures less.
    assert (refunded["status"], refunded["refunded_amount"]) == ("held", "30.00")
    assert (await raw.v1.payment_intents.retrieve_async(payment["stripe_payment_id"])).status == (
        "requires_capture"
    )

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    intent = await raw.v1.payment_intents.retrieve_async(
        payment["stripe_payment_id"], {"expand": ["latest_charge"]}
    )
    charge = intent.to_dict()["latest_charge"]
    assert intent.status == "succeeded"
    # Stripe (and localstripe) count the part left uncaptured as refunded on the charge.
    assert (charge["amount"], charge["amount_refunded"]) == (10000, 3000)
    assert (await payment_row(api, payment["id"])).captured_amount == 7000
    # 70.00 released: fee 5.00 - 1.50 returned = 3.50, worker 95.00 - 28.50 = 66.50.
    assert (await api.earnings(pro))["available_balance"] == "66.50"


async def test_full_refund_before_release_cancels_the_intent(
    peer_api: Api, raw: stripe.StripeClient
) -> None:
    api = peer_api
    client, pro, payment = await api.held_payment("80.00")
    admin = await api.admin()

    refunded = await refund(api, admin, payment["id"])
    assert (refunded["status"], refunded["refunded_amount"]) == ("refunded", "80.00")
    intent = await raw.v1.payment_intents.retrieve_async(payment["stripe_payment_id"])
    assert intent.status == "canceled"
    booking = await api.get(f"/bookings/{payment['booking_id']}", client)
    assert booking["status"] == "cancelled"
    assert (await api.earnings(pro))["pending_balance"] == "0.00"
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "payment_refund"]


async def test_refunds_after_release_are_stripe_refunds(
    peer_api: Api, raw: stripe.StripeClient
) -> None:
    api = peer_api
    client, pro, payment = await api.held_payment("150.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    admin = await api.admin()

    first = await refund(api, admin, payment["id"], "50.00")
    assert (first["status"], first["refunded_amount"]) == ("released", "50.00")
    # The worker gives back 47.50 of 142.50, the fee 2.50 of 7.50 (pro rata).
    assert (await api.earnings(pro))["available_balance"] == "95.00"

    second = await refund(api, admin, payment["id"])
    assert (second["status"], second["refunded_amount"]) == ("refunded", "150.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"

    intent = await raw.v1.payment_intents.retrieve_async(
        payment["stripe_payment_id"], {"expand": ["latest_charge"]}
    )
    assert intent.to_dict()["latest_charge"]["amount_refunded"] == 15000
    async with api.runtime.sessions() as session:
        refunds = (
            await session.scalars(
                select(PaymentRefund)
                .where(PaymentRefund.payment_id == payment["id"])
                .order_by(PaymentRefund.id)
            )
        ).all()
    assert [(r.amount, r.fee_part, r.before_release) for r in refunds] == [
        (5000, 250, False),
        (10000, 500, False),
    ]
    assert all(r.provider_refund_id and r.provider_refund_id.startswith("re_") for r in refunds)


async def test_charge_time_decline_is_402_and_the_payment_fails(
    peer_api: Api, stripe_peer: Peer
) -> None:
    api = peer_api
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "60.00")

    r = await api.stripe_payment(client, booking, payment_method=PM_CHARGE_FAILS)

    assert r.status_code == 402, r.text
    code = "card_declined" if stripe_peer.localstripe else "generic_decline"
    assert r.json()["detail"] == f"Your card was declined. (decline code: {code})"
    (failed,) = (await api.get("/payments/", client))["items"]
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == r.json()["detail"]
    assert await entry_kinds(api, failed["id"]) == []

    # A failed attempt leaves the booking payable with another card.
    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201 and r.json()["status"] == "held", r.text


async def test_decline_at_confirmation_cancels_the_intent(
    peer_api: Api, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    if stripe_peer.localstripe is None:
        pytest.skip(
            "Stripe test mode: confirming a Stripe.js intent server-side needs a return_url; "
            "the payer's browser confirms it"
        )
    api = peer_api
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "45.00")
    r = await api.stripe_payment(client, booking, payment_method=None)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending"
    assert created["client_secret"].startswith(created["stripe_payment_id"])

    # Stripe.js attaches the payer's card; the card is declined when confirmed.
    await raw.v1.payment_intents.update_async(
        created["stripe_payment_id"], {"payment_method": PM_CHARGE_FAILS}
    )
    r = await api.post(
        "/payments/stripe/confirm",
        client,
        {"payment_intent_id": created["stripe_payment_id"], "booking_id": booking["id"]},
    )

    assert r.status_code == 402, r.text
    assert r.json()["detail"] == "Your card was declined. (decline code: card_declined)"
    assert (await payment_row(api, created["id"])).status == "failed"
    # Canceled at Stripe: the payer cannot retry on this intent (a new payment is needed).
    intent = await raw.v1.payment_intents.retrieve_async(created["stripe_payment_id"])
    assert intent.status == "canceled"


async def _authenticate(peer: LocalStripe, intent_id: str, client_secret: str) -> None:
    """localstripe's stand-in for the 3-D Secure page, called as Stripe.js would."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{peer.url}/v1/payment_intents/{intent_id}/_authenticate",
            data={"client_secret": client_secret, "success": "true", "key": peer.publishable_key},
        )
    answer.raise_for_status()


async def test_three_d_secure_then_confirm_holds(
    peer_api: Api, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    api = peer_api
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "75.00")
    if stripe_peer.localstripe:
        method = await raw.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": CARD_3DS, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        payment_method = str(method.id)
    else:
        payment_method = PM_3DS_STRIPE  # Stripe refuses raw card numbers from servers

    r = await api.stripe_payment(client, booking, payment_method=payment_method)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["client_secret"]
    confirm = {"payment_intent_id": created["stripe_payment_id"], "booking_id": booking["id"]}
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 402 and r.json()["detail"].startswith("authentication_required")

    if stripe_peer.localstripe is None:
        # Stripe's 3-D Secure page needs a browser: the client gives up and cancels,
        # which cancels the intent.
        r = await api.post(f"/bookings/{booking['id']}/cancel", client)
        assert r.status_code == 200, r.text
        intent = await raw.v1.payment_intents.retrieve_async(created["stripe_payment_id"])
        assert intent.status == "canceled"
        return

    await _authenticate(
        stripe_peer.localstripe, created["stripe_payment_id"], created["client_secret"]
    )
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held"
    r = await api.post(f"/payments/{created['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert (await api.earnings(pro))["available_balance"] == "71.25"


async def test_cancelling_a_booking_with_a_pending_payment_cancels_the_intent(
    peer_api: Api, raw: stripe.StripeClient
) -> None:
    api = peer_api
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "20.00")
    created = (await api.stripe_payment(client, booking, payment_method=None)).json()

    r = await api.post(f"/bookings/{booking['id']}/cancel", client)

    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert (await payment_row(api, created["id"])).status == "failed"
    intent = await raw.v1.payment_intents.retrieve_async(created["stripe_payment_id"])
    assert intent.status == "canceled"


def _started(server: uvicorn.Server) -> Any:
    async def check() -> bool:
        return bool(server.started)

    return check


@contextlib.asynccontextmanager
async def serving(api: Api) -> AsyncIterator[str]:
    """Our app on a real socket in this event loop (where its database engine lives), for
    a peer to deliver webhooks to."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(api.runtime), log_level="warning", access_log=False, lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(_started(server), timeout_seconds=10)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/payments/webhooks/stripe"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_localstripe_signed_webhooks_reach_our_endpoint(
    peer_api: Api, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    """localstripe signs its events with the secret it is given and posts them to our
    endpoint over HTTP; the worker processes them. Someone captures the hold in Stripe's
    dashboard: `payment_intent.succeeded` marks it captured without a second entry, and
    the release then needs no capture call."""
    if stripe_peer.localstripe is None:
        pytest.skip("Stripe cannot deliver webhooks to 127.0.0.1")
    api = peer_api
    hook = f"integration-{secrets.token_hex(4)}"
    config_url = f"{stripe_peer.localstripe.url}/_config/webhooks/{hook}"
    events = ["payment_intent.succeeded", "payment_intent.payment_failed"]
    async with (
        serving(api) as url,
        running_worker(api.runtime, concurrency=2, name="stripe-integration"),
        httpx.AsyncClient(timeout=10) as http,
    ):
        registered = await http.post(
            config_url, json={"url": url, "secret": TEST_WEBHOOK_SECRET, "events": events}
        )
        registered.raise_for_status()
        try:
            client, pro, payment = await api.held_payment("90.00")
            await raw.v1.payment_intents.capture_async(payment["stripe_payment_id"])

            async def captured() -> bool:
                row = await payment_row(api, payment["id"])
                return row.hold_kind == "captured"

            await eventually(captured, timeout_seconds=20)
            row = await payment_row(api, payment["id"])
            assert (row.status, row.captured_amount, row.capture_by) == ("held", 9000, None)
            assert await entry_kinds(api, payment["id"]) == ["payment_hold"]

            r = await api.post(f"/payments/{payment['id']}/release", client)
            assert r.status_code == 200 and r.json()["status"] == "released", r.text
            assert (await api.earnings(pro))["available_balance"] == "85.50"
        finally:
            # localstripe cannot forget a webhook: point this one at no event type.
            await http.post(
                config_url,
                json={"url": url, "secret": TEST_WEBHOOK_SECRET, "events": ["none.none"]},
            )
        admin = await api.admin()
        deliveries = (await api.get("/admin/webhooks", admin))["items"]
    mine = [
        d
        for d in deliveries
        if d["event_type"] == "payment_intent.succeeded" and d["status"] == "processed"
    ]
    assert mine, deliveries
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "payment_release"]
