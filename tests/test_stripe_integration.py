"""The real service with real Stripe: our HTTP API, the official SDK, a Stripe peer.

- localstripe (or Stripe's test mode when STRIPE_SECRET_KEY=sk_test_... is set): escrow
  with manual capture (pm_card_visa -> held -> release captures), a partial refund before
  release capturing less, a full refund before release canceling the intent, refunds
  after release, charge-time and confirm-time declines (4000000000000341) as 402s,
  3-D Secure (4000002500003155) finished through localstripe's `_authenticate`, and
  localstripe's own signed webhooks delivered to our endpoint over HTTP.
- the request-level double (tests/peers/stripe_double.py), for what localstripe lacks:
  Connect onboarding, transfers and reversals, idempotent replay after a lost answer,
  decline codes, and the events localstripe never sends (charge.refunded, disputes,
  transfer.reversed, account.updated, canceled intents), signed with our test secret.

Amounts are exact; the ledger's invariants are checked after every test (conftest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from sqlalchemy import func, select

from handwork_payments.app import create_app
from handwork_payments.kit.clock import now
from handwork_payments.models import (
    Alert,
    JournalEntry,
    Payment,
    PaymentDispute,
    PaymentRefund,
    PayoutReversal,
    User,
    WebhookDelivery,
)
from handwork_payments.payments import background
from handwork_payments.payouts import service as payouts_service
from handwork_payments.providers import stripe_events
from handwork_payments.providers.stripe import StripeProvider
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as inbox
from handwork_payments.worker import running_worker
from tests.conftest import TEST_WEBHOOK_SECRET, make_settings
from tests.helpers import Api, Party, eventually
from tests.peers.localstripe_server import LocalStripe, running_localstripe
from tests.peers.stripe_double import StripeDouble

# The SDK hands httpx its encoded form as `data=`, which httpx 0.28 deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)

_ENV_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
# Only a test-mode key ever sends these tests to Stripe: a live key is ignored.
STRIPE_TEST_MODE = _ENV_KEY.startswith("sk_test_")

PM_CHARGE_FAILS = "pm_card_chargeCustomerFail"  # 4000000000000341: attaches, then declines
CARD_3DS = "4000002500003155"  # needs 3-D Secure for a one-off payment
PM_3DS_STRIPE = "pm_card_authenticationRequiredOnSetup"  # the same card in Stripe test mode
# The signing secret of the Connect endpoint (events on connected accounts).
CONNECT_WEBHOOK_SECRET = "whsec_test_connect_endpoint"
# Starts every id the service sends Stripe (PROVIDER_ID_PREFIX); a new one per run, as real
# Stripe test mode remembers idempotency keys for a day.
PREFIX = "hwst" + uuid.uuid4().hex[:8]


# --- peers and runtimes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    secret_key: str
    api_base: str | None
    localstripe: LocalStripe | None = None


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture, so every run says which Stripe it talked to."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"\n{line}")


@pytest.fixture(scope="session")
def stripe_peer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Peer]:
    if STRIPE_TEST_MODE:
        _say(request, "Stripe integration: running against Stripe's test mode (STRIPE_SECRET_KEY)")
        yield Peer(name="stripe test mode", secret_key=_ENV_KEY, api_base=None)
        return
    log = tmp_path_factory.mktemp("localstripe-integration") / "stderr.log"
    with running_localstripe(log) as local:
        _say(
            request,
            f"Stripe integration: no sk_test_ STRIPE_SECRET_KEY, using localstripe at {local.url}",
        )
        yield Peer("localstripe", local.secret_key, local.url, local)


@contextlib.asynccontextmanager
async def api_for(runtime: Runtime) -> AsyncIterator[Api]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, runtime)


@pytest.fixture
async def peer_api(runtime: Runtime, database_url: str, stripe_peer: Peer) -> AsyncIterator[Api]:
    """The service with STRIPE_SECRET_KEY and STRIPE_API_BASE pointing at the peer. (It
    asks for `runtime` so conftest empties the tables and checks the ledger.)"""
    settings = make_settings(
        database_url,
        stripe_secret_key=stripe_peer.secret_key,
        stripe_api_base=stripe_peer.api_base,
        provider_timeout_seconds=30.0 if stripe_peer.api_base is None else 10.0,
        provider_id_prefix=PREFIX,
    )
    built = Runtime.build(settings, database_url)
    assert isinstance(built.providers.stripe, StripeProvider)
    try:
        async with api_for(built) as api:
            yield api
    finally:
        await built.aclose()


@pytest.fixture
async def raw(stripe_peer: Peer) -> AsyncIterator[stripe.StripeClient]:
    """A plain SDK client: what the payer's browser or Stripe's dashboard would do."""
    http = stripe.HTTPXClient(timeout=30)
    client = stripe.StripeClient(
        stripe_peer.secret_key,
        http_client=http,
        base_addresses={"api": stripe_peer.api_base} if stripe_peer.api_base else None,
    )
    yield client
    await http.close_async()


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble() as peer:
        yield peer


@pytest.fixture
async def dbl(runtime: Runtime, database_url: str, double: StripeDouble) -> AsyncIterator[Api]:
    """The service against the request-level double: no SDK network retries and a short
    timeout, so each test scripts exactly the faults it wants."""
    settings = make_settings(
        database_url,
        stripe_secret_key=double.secret_key,
        stripe_api_base=double.url,
        stripe_connect_webhook_secret=CONNECT_WEBHOOK_SECRET,
        provider_timeout_seconds=2.0,
        provider_id_prefix=PREFIX,
    )
    built = Runtime.build(settings, database_url)
    await built.providers.aclose()
    built.providers.stripe = StripeProvider(
        settings,
        max_network_retries=0,
        rate_limit_base_delay_seconds=0.01,
        ids=built.providers.ids,
    )
    try:
        async with api_for(built) as api:
            yield api
    finally:
        await built.aclose()


@pytest.fixture
async def dashboard(double: StripeDouble) -> AsyncIterator[stripe.StripeClient]:
    """Someone acting in Stripe's dashboard (here: on the double)."""
    http = stripe.HTTPXClient(timeout=10)
    yield stripe.StripeClient(
        double.secret_key, http_client=http, base_addresses={"api": double.url}
    )
    await http.close_async()


# --- helpers -----------------------------------------------------------------------------------


async def payment_row(api: Api, payment_id: int) -> Payment:
    async with api.runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment


async def entry_kinds(api: Api, payment_id: int) -> list[str]:
    async with api.runtime.sessions() as session:
        rows = await session.scalars(
            select(JournalEntry.kind)
            .where(JournalEntry.payment_id == payment_id)
            .order_by(JournalEntry.id)
        )
        return list(rows)


async def alerts(api: Api, kind: str) -> list[Alert]:
    async with api.runtime.sessions() as session:
        return list(await session.scalars(select(Alert).where(Alert.kind == kind)))


async def refund(api: Api, admin: Party, payment_id: int, amount: str | None = None) -> Any:
    body: dict[str, Any] = {"payment_id": payment_id, "reason": "Client asked"}
    if amount is not None:
        body["amount"] = amount
    r = await api.post("/payments/refund", admin, body)
    assert r.status_code == 200, r.text
    return r.json()


def signed(
    event_type: str, obj: dict[str, Any], secret: str = TEST_WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str], str]:
    event_id = f"evt_{secrets.token_hex(8)}"
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": stripe_events.sign(body, secret),
    }
    return body, headers, event_id


async def deliver(
    api: Api,
    event_type: str,
    obj: dict[str, Any],
    *,
    retried: bool = False,
    secret: str = TEST_WEBHOOK_SECRET,
) -> WebhookDelivery:
    """Post an event signed with our test secret to our endpoint and process the stored
    delivery as the worker would. `retried`: processing must fail for a retry."""
    body, headers, event_id = signed(event_type, obj, secret)
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session:
        delivery = (
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
            )
        ).one()
    try:
        await inbox.process(api.runtime, delivery.id)
    except Exception:
        # The inbox records the failure for a retry (and may re-raise it for the job).
        if not retried:
            raise
    async with api.runtime.sessions() as session:
        stored = await session.get(WebhookDelivery, delivery.id)
        assert stored is not None
    if retried:
        assert stored.status == "failed" and "in flight" in (stored.last_error or ""), stored
    else:
        assert stored.status == "processed", stored.last_error
    return stored


def intent_event(double: StripeDouble, intent_id: str, **changes: Any) -> dict[str, Any]:
    return {**double.intents[intent_id], **changes}


def charge_of(double: StripeDouble, intent_id: str) -> dict[str, Any]:
    return dict(double.charges[double.intents[intent_id]["latest_charge"]])


def dispute_object(
    double: StripeDouble, intent_id: str, amount: int, status: str, dispute_id: str
) -> dict[str, Any]:
    charge = charge_of(double, intent_id)
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "charge": charge["id"],
        "currency": charge["currency"],
        "payment_intent": intent_id,
        "reason": "fraudulent",
        "status": status,
        "created": int(time.time()),
        "livemode": False,
    }


async def onboarded(api: Api, double: StripeDouble, worker: Party) -> str:
    """The worker's Express account through our endpoint, with payouts enabled by Stripe
    (the double's account updated, and its account.updated delivered)."""
    r = await api.post("/payments/stripe/connect/onboarding", worker)
    assert r.status_code == 200, r.text
    account_id: str = r.json()["account_id"]
    double.accounts[account_id].update(
        payouts_enabled=True, charges_enabled=True, details_submitted=True
    )
    delivery = await deliver(
        api, "account.updated", dict(double.accounts[account_id]), secret=CONNECT_WEBHOOK_SECRET
    )
    assert delivery.status == "processed"
    return account_id


async def paid_out(api: Api, worker: Party, amount: str) -> dict[str, Any]:
    """A Stripe payout of `amount`, requested, processed by an admin and sent (the job's
    work, run here)."""
    r = await api.post(
        "/payments/payouts/request", worker, {"amount": amount, "payment_method": "stripe"}
    )
    assert r.status_code == 201, r.text
    payout_id = r.json()["id"]
    admin = await api.admin()
    r = await api.post(f"/payments/payouts/{payout_id}/process", admin)
    assert r.status_code == 200, r.text
    await payouts_service.send(api.runtime, payout_id)
    items = (await api.get("/payments/payouts", worker))["items"]
    payout: dict[str, Any] = next(p for p in items if p["id"] == payout_id)
    assert payout["status"] == "completed", payout
    return payout


async def reversals_of(api: Api, payout_id: int) -> list[PayoutReversal]:
    async with api.runtime.sessions() as session:
        return list(
            await session.scalars(
                select(PayoutReversal)
                .where(PayoutReversal.payout_id == payout_id)
                .order_by(PayoutReversal.id)
            )
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


# --- against the double: Connect onboarding -------------------------------------------------


async def test_onboarding_creates_one_express_account_and_links_to_it(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    pro = await api.user("worker")

    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    first = r.json()
    account_id = first["account_id"]
    assert account_id.startswith("acct_")
    assert first["url"].startswith(f"https://connect.stripe.com/setup/e/{account_id}/")

    (create,) = double.requests("POST", "/v1/accounts")
    assert create.form == {
        "type": "express",
        "email": pro.email,
        "capabilities[transfers][requested]": "true",
        "metadata[worker_id]": str(pro.id),
        "metadata[reference]": f"{PREFIX}-worker-{pro.id}",
    }
    assert create.idempotency_key == f"{PREFIX}-connect-account-{pro.id}"
    (link,) = double.requests("POST", "/v1/account_links")
    settings = api.runtime.settings
    assert link.form == {
        "account": account_id,
        "refresh_url": settings.stripe_connect_refresh_url,
        "return_url": settings.stripe_connect_return_url,
        "type": "account_onboarding",
    }

    # Asking again (the link expired): the same account, a new link.
    again = (await api.post("/payments/stripe/connect/onboarding", pro)).json()
    assert again["account_id"] == account_id and again["url"] != first["url"]
    assert len(double.accounts) == 1 and len(double.requests("POST", "/v1/accounts")) == 1

    # A client has no payouts.
    client = await api.user("client")
    assert (await api.post("/payments/stripe/connect/onboarding", client)).status_code == 403


async def test_onboarding_after_a_lost_answer_uses_the_same_account(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    pro = await api.user("worker")
    double.hang_next("POST", "/v1/accounts", after_effect=True)

    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 502, r.text
    async with api.runtime.sessions() as session:
        assert (await session.get(User, pro.id)).stripe_account_id is None  # type: ignore[union-attr]

    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    assert len(double.accounts) == 1
    assert r.json()["account_id"] == next(iter(double.accounts))
    keys = [q.idempotency_key for q in double.requests("POST", "/v1/accounts")]
    assert keys == [f"{PREFIX}-connect-account-{pro.id}"] * 2


async def test_payouts_wait_for_stripe_to_enable_them(dbl: Api, double: StripeDouble) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    r = await api.post("/payments/stripe/connect/onboarding", pro)
    account_id = r.json()["account_id"]

    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "50.00", "payment_method": "stripe"}
    )
    assert r.status_code == 400 and "onboarding" in r.json()["detail"], r.text

    double.accounts[account_id].update(payouts_enabled=True, details_submitted=True)
    # From the Connect endpoint, signed with its own secret; a third secret is refused.
    body, headers, _ = signed("account.updated", dict(double.accounts[account_id]), "whsec_x")
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 400, r.text
    delivery = await deliver(
        api, "account.updated", dict(double.accounts[account_id]), secret=CONNECT_WEBHOOK_SECRET
    )
    assert delivery.status == "processed"
    async with api.runtime.sessions() as session:
        assert (await session.get(User, pro.id)).stripe_payouts_enabled  # type: ignore[union-attr]

    payout = await paid_out(api, pro, "50.00")
    (transfer,) = double.requests("POST", "/v1/transfers")
    assert transfer.form == {
        "amount": "5000",
        "currency": "usd",
        "destination": account_id,
        "transfer_group": f"{PREFIX}-payout-{payout['id']}",
        "metadata[payout_id]": str(payout["id"]),
        "metadata[reference]": f"{PREFIX}-payout-{payout['id']}",
    }
    assert transfer.idempotency_key == f"{PREFIX}-payout-{payout['id']}"
    assert double.account_balances[account_id] == {"usd": 5000}

    # Stripe restricts the account: no more payouts until it enables them again.
    double.accounts[account_id].update(payouts_enabled=False)
    await deliver(api, "account.updated", dict(double.accounts[account_id]))
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "10.00", "payment_method": "stripe"}
    )
    assert r.status_code == 400, r.text


async def test_onboarding_on_the_simulator(api: Api) -> None:
    """Without STRIPE_SECRET_KEY the same endpoint works on the built-in simulator."""
    from handwork_payments.providers.simulated import STRIPE_CONNECT_LINK_BASE, SimulatedProvider

    pro = await api.user("worker")
    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    account_id = r.json()["account_id"]
    assert account_id.startswith("acct_")
    assert r.json()["url"] == f"{STRIPE_CONNECT_LINK_BASE}/{account_id}"
    again = (await api.post("/payments/stripe/connect/onboarding", pro)).json()
    assert again["account_id"] == account_id

    simulator = api.runtime.providers.stripe
    assert isinstance(simulator, SimulatedProvider)
    account = await simulator.complete_onboarding(account_id)
    body, headers = simulator.stripe_event("account.updated", account)
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session:
        delivery = (await session.scalars(select(WebhookDelivery))).one()
    await inbox.process(api.runtime, delivery.id)
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": account_id},
        headers=pro.headers,
    )
    assert r.json() == {
        "stripe_account_id": account_id,
        "paypal_email": None,
        "stripe_payouts_enabled": True,
    }


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
    assert capture.form == {"amount_to_capture": "7500", "expand[0]": "latest_charge"}
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
    assert await entry_kinds(api, payment["id"]) == ["payment_hold"]

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # Already captured: the release made no second capture call.
    assert len(double.requests("POST", f"/v1/payment_intents/{intent_id}/capture")) == 1
    # Our own capture's event after the release changes nothing.
    await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "payment_release"]
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


# --- against the double: chargebacks -------------------------------------------------------------


async def test_chargeback_on_a_held_payment_freezes_it_until_won(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    # Disputes exist on captured charges: the hold guard captured this one.
    await dashboard.v1.payment_intents.capture_async(intent_id)
    await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))

    opened = dispute_object(double, intent_id, 10000, "needs_response", "du_held1")
    await deliver(api, "charge.dispute.created", opened)
    await deliver(api, "charge.dispute.created", opened)  # repeated: one dispute

    assert (await payment_row(api, payment["id"])).status == "disputed"
    (dispute,) = (await api.get("/payments/disputes", client))["items"]
    assert (dispute["status"], dispute["initiated_by"]) == ("open", None)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409
    admin = await api.admin()
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "refund", "resolution_notes": "not ours to decide"},
    )
    assert r.status_code == 409 and "card network" in r.json()["detail"], r.text

    await deliver(api, "charge.dispute.closed", {**opened, "status": "won"})
    assert (await payment_row(api, payment["id"])).status == "held"
    (closed,) = (await api.get("/payments/disputes", client))["items"]
    assert closed["status"] == "closed" and "won" in closed["resolution_notes"]
    assert await entry_kinds(api, payment["id"]) == ["payment_hold"]

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert (await api.earnings(pro))["available_balance"] == "95.00"


async def test_chargeback_lost_on_a_held_payment_refunds_from_escrow(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    await dashboard.v1.payment_intents.capture_async(intent_id)
    await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))
    # A partial chargeback whose `closed` overtakes its `created`: opened, then decided.
    lost = dispute_object(double, intent_id, 4000, "lost", "du_held2")

    await deliver(api, "charge.dispute.closed", lost)
    await deliver(api, "charge.dispute.created", {**lost, "status": "needs_response"})

    row = await payment_row(api, payment["id"])
    # 40.00 went back to the payer out of escrow; 60.00 is held for the client to release.
    assert (row.status, row.refunded_amount, row.refunded_fee) == ("held", 4000, 200)
    assert (await api.earnings(pro))["pending_balance"] == "57.00"
    async with api.runtime.sessions() as session:
        dispute = (await session.scalars(select(PaymentDispute))).one()
    assert (dispute.status, dispute.outcome, dispute.refund_amount) == ("closed", "split", 4000)
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "payment_refund"]
    assert len(await alerts(api, "chargeback_lost")) == 1

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert (await api.earnings(pro))["available_balance"] == "57.00"


async def test_chargeback_lost_after_release_and_payout_reverses_the_transfer(
    dbl: Api, double: StripeDouble
) -> None:
    """Recorded without moving the released payment; lost, the disputed amount is taken
    back from the worker (fee pro rata) and, the worker being paid out, from their
    connected account by a transfer reversal."""
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    await api.post(f"/payments/{payment['id']}/release", client)
    account_id = await onboarded(api, double, pro)
    payout = await paid_out(api, pro, "95.00")
    opened = dispute_object(double, intent_id, 10000, "needs_response", "du_released")

    await deliver(api, "charge.dispute.created", opened)
    assert (await payment_row(api, payment["id"])).status == "released"
    (dispute,) = (await api.get("/payments/disputes", client))["items"]
    assert dispute["status"] == "open"
    assert len(await alerts(api, "dispute_opened")) == 1

    await deliver(api, "charge.dispute.closed", {**opened, "status": "lost"})

    row = await payment_row(api, payment["id"])
    assert (row.status, row.refunded_amount, row.refunded_fee) == ("refunded", 10000, 500)
    (reversal,) = await reversals_of(api, payout["id"])
    assert (reversal.amount, reversal.status) == (9500, "succeeded")
    (request,) = double.requests("POST", f"/v1/transfers/{payout['stripe_transfer_id']}/reversals")
    assert request.form == {"amount": "9500"}
    assert request.idempotency_key == f"{PREFIX}-payout-{payout['id']}-reversal-{reversal.id}"
    assert double.account_balances[account_id] == {"usd": 0}
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "0.00"
    history = (await api.get("/payments/transactions", pro))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in history] == [
        ("payout", "95.00"),
        ("refund", "-95.00"),
        ("payout", "-95.00"),
        ("earning", "95.00"),
    ]
    assert await entry_kinds(api, payment["id"]) == [
        "payment_hold",
        "payment_release",
        "payment_refund",
    ]


# --- against the double: refunds after payout, transfer reversals -----------------------------


async def test_refund_after_payout_reverses_the_most_recent_transfers(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    account_id = await onboarded(api, double, pro)
    older = await paid_out(api, pro, "30.00")
    newer = await paid_out(api, pro, "50.00")
    assert (await api.earnings(pro))["available_balance"] == "15.00"
    admin = await api.admin()

    refunded = await refund(api, admin, payment["id"])

    assert refunded["status"] == "refunded"
    # The worker gave back 95.00 with 15.00 available: 80.00 is taken back from the
    # payouts, the most recent first.
    (from_newer,) = await reversals_of(api, newer["id"])
    (from_older,) = await reversals_of(api, older["id"])
    assert (from_newer.amount, from_newer.status) == (5000, "succeeded")
    assert (from_older.amount, from_older.status) == (3000, "succeeded")
    assert from_newer.id < from_older.id
    assert double.transfers[newer["stripe_transfer_id"]]["amount_reversed"] == 5000
    assert double.transfers[older["stripe_transfer_id"]]["amount_reversed"] == 3000
    assert double.account_balances[account_id] == {"usd": 0}
    assert (await api.earnings(pro))["available_balance"] == "0.00"

    # The transfer.reversed events of our own reversals change nothing.
    for payout in (newer, older):
        transfer = double.transfers[payout["stripe_transfer_id"]]
        await deliver(api, "transfer.reversed", dict(transfer))
    assert len(await reversals_of(api, newer["id"])) == 1
    assert (await api.earnings(pro))["available_balance"] == "0.00"


async def test_refund_after_payout_the_account_cannot_cover_leaves_a_debt(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    account_id = await onboarded(api, double, pro)
    payout = await paid_out(api, pro, "95.00")
    double.set_account_balance(account_id, "usd", 1000)  # paid out to the bank meanwhile
    admin = await api.admin()

    await refund(api, admin, payment["id"], "40.00")

    (reversal,) = await reversals_of(api, payout["id"])
    assert (reversal.amount, reversal.status) == (3800, "failed")
    assert reversal.failure_reason and "insufficient funds" in reversal.failure_reason
    # Never lost: the worker's 38.00 debt is on the books, and an operator is told.
    assert (await api.earnings(pro))["available_balance"] == "-38.00"
    (refused,) = await alerts(api, "payout_reversal_failed")
    assert refused.object_id == payout["id"]

    # Later earnings pay it off.
    booking = await api.booking(client, pro, "50.00")
    second = (await api.stripe_payment(client, booking)).json()
    await api.post(f"/payments/{second['id']}/release", client)
    assert (await api.earnings(pro))["available_balance"] == "9.50"


async def test_transfer_reversed_at_stripe(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    """In part: the amount comes back to the worker's balance; in full, with none of it
    ours: the payout failed (returned)."""
    api = dbl
    client, pro, payment = await api.held_payment("200.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await onboarded(api, double, pro)
    partly = await paid_out(api, pro, "100.00")
    wholly = await paid_out(api, pro, "90.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"

    partly_id = partly["stripe_transfer_id"]
    await dashboard.v1.transfers.reversals.create_async(partly_id, {"amount": 2500})
    await deliver(api, "transfer.reversed", dict(double.transfers[partly_id]))
    await deliver(api, "transfer.reversed", dict(double.transfers[partly_id]))

    (external,) = await reversals_of(api, partly["id"])
    assert (external.amount, external.refund_id, external.status) == (2500, None, "succeeded")
    assert (await api.earnings(pro))["available_balance"] == "25.00"
    assert len(await alerts(api, "payout_reversed_externally")) == 1

    wholly_id = wholly["stripe_transfer_id"]
    await dashboard.v1.transfers.reversals.create_async(wholly_id, {})
    await deliver(api, "transfer.reversed", dict(double.transfers[wholly_id]))
    items = (await api.get("/payments/payouts", pro))["items"]
    failed = next(p for p in items if p["id"] == wholly["id"])
    assert failed["status"] == "failed"
    assert (await api.earnings(pro))["available_balance"] == "115.00"
    assert await reversals_of(api, wholly["id"]) == []


async def test_reversal_left_pending_is_resumed_with_the_same_key(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await onboarded(api, double, pro)
    payout = await paid_out(api, pro, "95.00")
    path = f"/v1/transfers/{payout['stripe_transfer_id']}/reversals"
    double.hang_next("POST", path, after_effect=True)
    admin = await api.admin()

    refunded = await refund(api, admin, payment["id"], "20.00")
    assert refunded["refunded_amount"] == "20.00"  # the refund stands; the reversal waits
    (pending,) = await reversals_of(api, payout["id"])
    assert (pending.amount, pending.status) == (1900, "pending")
    assert (await api.earnings(pro))["available_balance"] == "-19.00"
    # Its transfer.reversed waits for it too.
    transfer = dict(double.transfers[payout["stripe_transfer_id"]])
    await deliver(api, "transfer.reversed", transfer, retried=True)

    # The payments resolver resumes it once it is stale, under the same key.
    assert (await background.resolve_operations(api.runtime, now=now())).reversals == 0
    later = now() + timedelta(seconds=api.runtime.settings.provider_operation_stale_seconds + 1)
    assert (await background.resolve_operations(api.runtime, now=later)).reversals == 1

    (done,) = await reversals_of(api, payout["id"])
    assert done.status == "succeeded"
    assert double.transfers[payout["stripe_transfer_id"]]["amount_reversed"] == 1900
    assert [r.idempotency_key for r in double.requests("POST", path)] == [
        f"{PREFIX}-payout-{payout['id']}-reversal-{done.id}"
    ] * 2
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    async with api.runtime.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == "payout_reversal")
        )
    assert count == 1
