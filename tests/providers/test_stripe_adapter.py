"""The Stripe adapter through the real SDK, against Stripe peers.

- localstripe (or Stripe's test mode when STRIPE_SECRET_KEY=sk_test_... is set): manual
  capture, cancel, refunds, charge-time declines, 3-D Secure, localstripe's signed webhooks.
- the request-level double (tests/peers/stripe_double.py), for what localstripe lacks: the
  exact parameters and Idempotency-Keys the SDK sends, partial capture, Connect accounts,
  account links, transfers, reversals, idempotent replay, rate limits, declines with decline
  codes, 5xx and timeouts.
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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from aiohttp import web

from handwork_payments.providers import stripe_events, stripe_statements
from handwork_payments.providers.base import (
    EventKind,
    HoldRef,
    HoldState,
    InvalidSignatureError,
    NewHold,
    PaymentDeclinedError,
    PayoutOrder,
    ProviderError,
    ProviderUnavailableError,
    SetupState,
    StatementKind,
    TransferState,
)
from handwork_payments.providers.stripe import StripeProvider
from handwork_payments.settings import Settings
from tests.peers.localstripe_server import LocalStripe, running_localstripe
from tests.peers.stripe_double import CAPTURE_BEFORE_SECONDS, StripeDouble

WEBHOOK_SECRET = "whsec_test_adapter_secret"
# Every id sent to the provider starts with it (a new one per run: real Stripe test mode
# remembers idempotency keys for a day).
PREFIX = "t" + uuid.uuid4().hex[:10]

# The SDK hands httpx its encoded form as `data=`, which httpx 0.28 deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)

_ENV_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
# Only a test-mode key ever sends these tests to Stripe: a live key is ignored.
STRIPE_TEST_MODE = _ENV_KEY.startswith("sk_test_")

# Stripe's own test payment methods (the same ids work on localstripe).
PM_VISA = "pm_card_visa"
PM_CHARGE_FAILS = "pm_card_chargeCustomerFail"  # 4000000000000341: attaches, then declines
CARD_3DS = "4000002500003155"  # needs 3-D Secure for a one-off payment
PM_3DS_STRIPE = "pm_card_authenticationRequiredOnSetup"  # the same card in Stripe test mode


@dataclass(frozen=True)
class Peer:
    name: str  # "localstripe" or "stripe test mode"
    secret_key: str
    api_base: str | None
    localstripe: LocalStripe | None = None


def make_settings(*, secret_key: str, api_base: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stripe_secret_key": secret_key,
        "stripe_api_base": api_base,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_webhook_tolerance_seconds": 300,
        "provider_timeout_seconds": 30.0 if api_base is None else 5.0,
        "provider_id_prefix": PREFIX,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture, so every run says which Stripe it talked to."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"\n{line}")


@pytest.fixture(scope="session")
def localstripe_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    with running_localstripe(tmp_path_factory.mktemp("localstripe") / "stderr.log") as peer:
        yield peer


@pytest.fixture(scope="session")
def stripe_peer(request: pytest.FixtureRequest) -> Peer:
    if STRIPE_TEST_MODE:
        _say(request, "Stripe adapter: running against Stripe's test mode (STRIPE_SECRET_KEY)")
        return Peer(name="stripe test mode", secret_key=_ENV_KEY, api_base=None)
    local: LocalStripe = request.getfixturevalue("localstripe_peer")
    _say(
        request, f"Stripe adapter: no sk_test_ STRIPE_SECRET_KEY, using localstripe at {local.url}"
    )
    return Peer(
        name="localstripe", secret_key=local.secret_key, api_base=local.url, localstripe=local
    )


@pytest.fixture
async def provider(stripe_peer: Peer) -> AsyncIterator[StripeProvider]:
    adapter = StripeProvider(
        make_settings(secret_key=stripe_peer.secret_key, api_base=stripe_peer.api_base)
    )
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def raw(stripe_peer: Peer) -> AsyncIterator[stripe.StripeClient]:
    """A plain SDK client, for what the payer's browser or Stripe's dashboard would do."""
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
async def on_double(double: StripeDouble) -> AsyncIterator[StripeProvider]:
    # No SDK network retries, a fast backoff: each test scripts exactly what it wants.
    adapter = StripeProvider(
        make_settings(secret_key=double.secret_key, api_base=double.url),
        max_network_retries=0,
        rate_limit_base_delay_seconds=0.01,
    )
    yield adapter
    await adapter.aclose()


def new_id() -> int:
    # Idempotency keys live 24 hours at Stripe: ids unique across runs keep runs apart.
    return secrets.randbelow(10**12) + 1


async def hold_with(
    adapter: StripeProvider, payment_method: str | None, amount: int = 5000
) -> tuple[int, Any]:
    payment_id = new_id()
    hold = await adapter.create_hold(
        NewHold(
            payment_id=payment_id,
            booking_id=payment_id + 1,
            amount=amount,
            currency="USD",
            payment_method=payment_method,
        ),
        idempotency_key=f"payment-{payment_id}-hold",
    )
    return payment_id, hold


async def expected_capture_by(raw: stripe.StripeClient, intent_id: str) -> datetime:
    intent = (
        await raw.v1.payment_intents.retrieve_async(intent_id, {"expand": ["latest_charge"]})
    ).to_dict()
    card = ((intent.get("latest_charge") or {}).get("payment_method_details") or {}).get("card")
    if card and card.get("capture_before"):
        return datetime.fromtimestamp(card["capture_before"], tz=UTC)
    return datetime.fromtimestamp(intent["created"], tz=UTC) + timedelta(days=7)


# --- against localstripe / Stripe test mode ---------------------------------------------------


async def test_manual_capture_hold_is_authorized_then_captured(
    provider: StripeProvider, raw: stripe.StripeClient
) -> None:
    payment_id, hold = await hold_with(provider, PM_VISA)

    assert hold.state is HoldState.AUTHORIZED
    assert (hold.amount, hold.currency, hold.captured_amount) == (5000, "USD", 0)
    assert hold.provider_payment_id.startswith("pi_")
    assert hold.client_secret and hold.client_secret.startswith(hold.provider_payment_id)
    assert hold.capture_by == await expected_capture_by(raw, hold.provider_payment_id)
    intent = await raw.v1.payment_intents.retrieve_async(hold.provider_payment_id)
    assert (intent.amount, intent.currency, intent.capture_method) == (5000, "usd", "manual")
    assert intent.metadata.to_dict() == {
        "payment_id": str(payment_id),
        "booking_id": str(payment_id + 1),
        "reference": f"{PREFIX}-payment-{payment_id}",
    }

    # Confirming an authorised intent only reads it.
    again = await provider.confirm_hold(
        provider_payment_id=hold.provider_payment_id,
        payer_id=None,
        idempotency_key=f"payment-{payment_id}-confirm",
    )
    assert again.state is HoldState.AUTHORIZED

    ref = HoldRef(hold.provider_payment_id)
    capture = await provider.capture(
        ref=ref, amount=5000, currency="USD", idempotency_key=f"payment-{payment_id}-capture"
    )
    assert capture.capture_id.startswith("ch_")
    assert capture.amount == 5000

    captured = await provider.get_hold(ref)
    assert captured.state is HoldState.CAPTURED
    assert (captured.captured_amount, captured.refunded_amount) == (5000, 0)
    assert captured.capture_id == capture.capture_id
    assert captured.capture_by is None


async def test_cancel_voids_the_authorization(provider: StripeProvider) -> None:
    payment_id, hold = await hold_with(provider, PM_VISA, amount=2599)
    ref = HoldRef(hold.provider_payment_id)

    await provider.cancel(ref=ref, idempotency_key=f"payment-{payment_id}-cancel")

    canceled = await provider.get_hold(ref)
    assert canceled.state is HoldState.CANCELED
    assert (canceled.amount, canceled.captured_amount) == (2599, 0)
    with pytest.raises(ProviderError):
        await provider.capture(
            ref=ref, amount=2599, currency="USD", idempotency_key=f"payment-{payment_id}-capture"
        )


async def test_refunds_after_capture_add_up(provider: StripeProvider) -> None:
    payment_id, hold = await hold_with(provider, PM_VISA, amount=10000)
    ref = HoldRef(hold.provider_payment_id)
    await provider.capture(
        ref=ref, amount=10000, currency="USD", idempotency_key=f"payment-{payment_id}-capture"
    )

    first = await provider.refund(
        ref=ref, amount=2500, currency="USD", idempotency_key=f"payment-{payment_id}-refund-1"
    )
    assert first.refund_id.startswith("re_")
    assert first.amount == 2500
    assert (await provider.get_hold(ref)).refunded_amount == 2500

    second = await provider.refund(
        ref=ref, amount=7500, currency="USD", idempotency_key=f"payment-{payment_id}-refund-2"
    )
    assert second.amount == 7500
    assert second.refund_id != first.refund_id
    after = await provider.get_hold(ref)
    assert (after.captured_amount, after.refunded_amount) == (10000, 10000)


async def test_charge_time_decline_is_payment_declined(
    provider: StripeProvider, stripe_peer: Peer
) -> None:
    with pytest.raises(PaymentDeclinedError) as declined:
        await hold_with(provider, PM_CHARGE_FAILS)

    assert declined.value.message == "Your card was declined."
    # localstripe sends no decline_code; Stripe says why the issuer declined.
    expected = "card_declined" if stripe_peer.localstripe else "generic_decline"
    assert declined.value.code == expected


async def test_client_attached_card_is_confirmed_by_confirm_hold(
    provider: StripeProvider, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    if not stripe_peer.localstripe:
        pytest.skip(
            "Stripe test mode: an intent created for Stripe.js (allow_redirects=always) "
            "needs a return_url to be confirmed server-side; the payer's browser confirms it"
        )
    payment_id, hold = await hold_with(provider, None, amount=4200)
    assert hold.state is HoldState.REQUIRES_PAYMENT_METHOD
    assert hold.client_secret

    # What Stripe.js does before confirming: attach the payer's card.
    await raw.v1.payment_intents.update_async(hold.provider_payment_id, {"payment_method": PM_VISA})
    confirmed = await provider.confirm_hold(
        provider_payment_id=hold.provider_payment_id,
        payer_id=None,
        idempotency_key=f"payment-{payment_id}-confirm",
    )
    assert confirmed.state is HoldState.AUTHORIZED
    assert confirmed.amount == 4200


async def test_decline_while_confirming_then_hold_reads_failed(
    provider: StripeProvider, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    if not stripe_peer.localstripe:
        pytest.skip(
            "Stripe test mode: server-side confirmation of a Stripe.js intent needs a "
            "return_url; the create-time decline test covers declines there"
        )
    payment_id, hold = await hold_with(provider, None)
    await raw.v1.payment_intents.update_async(
        hold.provider_payment_id, {"payment_method": PM_CHARGE_FAILS}
    )

    with pytest.raises(PaymentDeclinedError) as declined:
        await provider.confirm_hold(
            provider_payment_id=hold.provider_payment_id,
            payer_id=None,
            idempotency_key=f"payment-{payment_id}-confirm",
        )
    assert declined.value.code == "card_declined"

    failed = await provider.get_hold(HoldRef(hold.provider_payment_id))
    assert failed.state is HoldState.FAILED
    assert failed.failure_message == "Your card was declined."


async def _three_d_secure_method(raw: stripe.StripeClient, stripe_peer: Peer) -> str:
    if not stripe_peer.localstripe:
        return PM_3DS_STRIPE  # Stripe refuses raw card numbers from servers
    method = await raw.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": CARD_3DS, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return str(method.id)


async def _authenticate(peer: LocalStripe, intent_id: str, client_secret: str, ok: bool) -> None:
    """localstripe's stand-in for the 3-D Secure page, called as Stripe.js would."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{peer.url}/v1/payment_intents/{intent_id}/_authenticate",
            data={
                "client_secret": client_secret,
                "success": "true" if ok else "false",
                "key": peer.publishable_key,
            },
        )
    answer.raise_for_status()


async def test_three_d_secure_then_authorized_and_captured(
    provider: StripeProvider, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    payment_id, hold = await hold_with(provider, await _three_d_secure_method(raw, stripe_peer))
    assert hold.state is HoldState.REQUIRES_ACTION
    assert hold.client_secret
    ref = HoldRef(hold.provider_payment_id)

    if stripe_peer.localstripe is None:
        # Stripe's 3-D Secure page needs a browser: stop at requires_action and clean up.
        await provider.cancel(ref=ref, idempotency_key=f"payment-{payment_id}-cancel")
        return

    await _authenticate(stripe_peer.localstripe, hold.provider_payment_id, hold.client_secret, True)
    authorized = await provider.confirm_hold(
        provider_payment_id=hold.provider_payment_id,
        payer_id=None,
        idempotency_key=f"payment-{payment_id}-confirm",
    )
    assert authorized.state is HoldState.AUTHORIZED
    capture = await provider.capture(
        ref=ref, amount=5000, currency="USD", idempotency_key=f"payment-{payment_id}-capture"
    )
    assert capture.amount == 5000


async def test_three_d_secure_failed_reads_failed(
    provider: StripeProvider, raw: stripe.StripeClient, stripe_peer: Peer
) -> None:
    if stripe_peer.localstripe is None:
        pytest.skip("failing 3-D Secure needs Stripe's authentication page in a browser")
    _, hold = await hold_with(provider, await _three_d_secure_method(raw, stripe_peer))

    await _authenticate(
        stripe_peer.localstripe, hold.provider_payment_id, hold.client_secret, False
    )

    failed = await provider.get_hold(HoldRef(hold.provider_payment_id))
    assert failed.state is HoldState.FAILED
    assert failed.failure_message == "The provided PaymentMethod has failed authentication."


# --- webhooks ------------------------------------------------------------------------------


def _event(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(6)}",
            "object": "event",
            "type": event_type,
            "data": {"object": obj},
        }
    ).encode()


async def test_webhook_signed_with_our_secret_is_verified_and_translated() -> None:
    adapter = StripeProvider(
        make_settings(secret_key="sk_test_unused", api_base="http://127.0.0.1:9")
    )
    try:
        body = _event(
            "payment_intent.amount_capturable_updated",
            {"id": "pi_123", "object": "payment_intent", "amount": 5000, "amount_capturable": 5000},
        )
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)

        event = await adapter.parse_event({"stripe-signature": header}, body)
        assert event.kind is EventKind.HOLD_AUTHORIZED
        assert (event.provider, event.object_id, event.amount) == ("stripe", "pi_123", 5000)
        # The simulator's signer (stripe_events.sign) makes signatures the SDK accepts.
        event = await adapter.parse_event(
            {"Stripe-Signature": stripe_events.sign(body, WEBHOOK_SECRET)}, body
        )
        assert event.object_id == "pi_123"

        stale = stripe.WebhookSignature.generate_signature_header(
            body.decode(), WEBHOOK_SECRET, timestamp=int(time.time()) - 301
        )
        wrong_secret = stripe.WebhookSignature.generate_signature_header(
            body.decode(), "whsec_other"
        )
        for headers, payload in [
            ({"Stripe-Signature": header}, body.replace(b"5000", b"9000")),  # tampered
            ({"Stripe-Signature": stale}, body),
            ({"Stripe-Signature": wrong_secret}, body),
            ({"Stripe-Signature": "t=abc,v1=00"}, body),
            ({}, body),
        ]:
            with pytest.raises(InvalidSignatureError):
                await adapter.parse_event(headers, payload)
    finally:
        await adapter.aclose()


async def test_webhook_without_configured_secret_is_refused() -> None:
    adapter = StripeProvider(
        make_settings(
            secret_key="sk_test_unused", api_base="http://127.0.0.1:9", stripe_webhook_secret=None
        )
    )
    try:
        body = _event("payment_intent.succeeded", {"id": "pi_1", "amount": 1})
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)
        with pytest.raises(InvalidSignatureError):
            await adapter.parse_event({"Stripe-Signature": header}, body)
    finally:
        await adapter.aclose()


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[
    tuple[str, asyncio.Queue[tuple[dict[str, str], bytes]]]
]:
    """An HTTP endpoint on 127.0.0.1 that queues what it receives, stopped on exit."""
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/stripe", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/stripe", received
    finally:
        await runner.cleanup()
        sock.close()


async def _delivery_about(
    received: asyncio.Queue[tuple[dict[str, str], bytes]], object_id: str
) -> tuple[dict[str, str], bytes]:
    while True:
        headers, body = await received.get()
        if json.loads(body)["data"]["object"]["id"] == object_id:
            return headers, body


async def test_localstripe_signed_webhook_is_verified(localstripe_peer: LocalStripe) -> None:
    """Always localstripe: Stripe cannot deliver to 127.0.0.1."""
    adapter = StripeProvider(
        make_settings(secret_key=localstripe_peer.secret_key, api_base=localstripe_peer.url)
    )
    hook = f"adapter-{secrets.token_hex(4)}"
    config_url = f"{localstripe_peer.url}/_config/webhooks/{hook}"
    try:
        async with webhook_receiver() as (url, received), httpx.AsyncClient(timeout=10) as http:
            registered = await http.post(
                config_url,
                json={"url": url, "secret": WEBHOOK_SECRET, "events": ["payment_intent.succeeded"]},
            )
            registered.raise_for_status()
            try:
                payment_id, hold = await hold_with(adapter, PM_VISA, amount=3100)
                await adapter.capture(
                    ref=HoldRef(hold.provider_payment_id),
                    amount=3100,
                    currency="USD",
                    idempotency_key=f"payment-{payment_id}-capture",
                )
                # localstripe delivers about a second later, with the events of earlier
                # tests still in flight: wait for the one about this intent.
                headers, body = await asyncio.wait_for(
                    _delivery_about(received, hold.provider_payment_id), timeout=15
                )
            finally:
                # localstripe cannot forget a webhook: point this one at no event type.
                await http.post(
                    config_url, json={"url": url, "secret": WEBHOOK_SECRET, "events": ["none.none"]}
                )

        event = await adapter.parse_event(headers, body)
        assert event.kind is EventKind.CAPTURED
        assert event.event_type == "payment_intent.succeeded"
        assert (event.object_id, event.amount) == (hold.provider_payment_id, 3100)
        with pytest.raises(InvalidSignatureError):
            await adapter.parse_event(headers, body + b" ")
    finally:
        await adapter.aclose()


# --- against the double: what the SDK sends ------------------------------------------------


async def test_create_hold_sends_manual_capture_intent_with_wallets(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    confirmed = await on_double.create_hold(
        NewHold(
            payment_id=41,
            booking_id=7,
            amount=15000,
            currency="USD",
            payment_method="pm_card_visa",
            return_url="https://example.test/ignored",
        ),
        idempotency_key="payment-41-hold",
    )
    for_stripe_js = await on_double.create_hold(
        NewHold(
            payment_id=42,
            booking_id=8,
            amount=990,
            currency="eur",
        ),
        idempotency_key="payment-42-hold",
    )

    server_side, client_side = double.requests("POST", "/v1/payment_intents")
    assert server_side.form == {
        "amount": "15000",
        "currency": "usd",
        "capture_method": "manual",
        "metadata[payment_id]": "41",
        "metadata[booking_id]": "7",
        "metadata[reference]": f"{PREFIX}-payment-41",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
        "payment_method": "pm_card_visa",
        "confirm": "true",
        "automatic_payment_methods[enabled]": "true",
        "automatic_payment_methods[allow_redirects]": "never",
    }
    assert server_side.idempotency_key == f"{PREFIX}-payment-41-hold"
    assert client_side.form == {
        "amount": "990",
        "currency": "eur",
        "capture_method": "manual",
        "metadata[payment_id]": "42",
        "metadata[booking_id]": "8",
        "metadata[reference]": f"{PREFIX}-payment-42",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
        "automatic_payment_methods[enabled]": "true",
    }
    assert client_side.idempotency_key == f"{PREFIX}-payment-42-hold"

    assert confirmed.state is HoldState.AUTHORIZED
    charge = double.charges[double.intents[confirmed.provider_payment_id]["latest_charge"]]
    # The charge's own capture_before wins over created + 7 days.
    assert confirmed.capture_by == datetime.fromtimestamp(
        charge["created"] + CAPTURE_BEFORE_SECONDS, tz=UTC
    )
    assert for_stripe_js.state is HoldState.REQUIRES_PAYMENT_METHOD
    assert (for_stripe_js.amount, for_stripe_js.currency) == (990, "EUR")
    assert (
        for_stripe_js.client_secret
        == double.intents[for_stripe_js.provider_payment_id]["client_secret"]
    )


async def test_create_hold_replayed_under_the_same_key_creates_one_intent(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    hold = NewHold(
        payment_id=5, booking_id=6, amount=1200, currency="USD", payment_method="pm_card_visa"
    )
    first = await on_double.create_hold(hold, idempotency_key="payment-5-hold")
    second = await on_double.create_hold(hold, idempotency_key="payment-5-hold")

    assert second == first
    assert len(double.intents) == 1
    # The same key with other parameters is Stripe's idempotency_error: a refusal.
    with pytest.raises(ProviderError) as refused:
        await on_double.create_hold(replace(hold, amount=1300), idempotency_key="payment-5-hold")
    assert refused.value.code == "idempotency_error"
    assert len(double.intents) == 1


async def test_requires_confirmation_is_confirmed_with_the_key(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    double_intent = await on_double.create_hold(
        NewHold(
            payment_id=9,
            booking_id=9,
            amount=700,
            currency="USD",
        ),
        idempotency_key="payment-9-hold",
    )
    intent_id = double_intent.provider_payment_id
    double.intents[intent_id].update(payment_method="pm_card_visa", status="requires_confirmation")

    hold = await on_double.confirm_hold(
        provider_payment_id=intent_id, payer_id=None, idempotency_key="payment-9-confirm"
    )

    assert hold.state is HoldState.AUTHORIZED
    (confirm,) = double.requests("POST", f"/v1/payment_intents/{intent_id}/confirm")
    assert confirm.idempotency_key == f"{PREFIX}-payment-9-confirm"
    assert confirm.form == {
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
    }


async def test_status_translation_of_pending_and_lapsed_intents(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    _, hold = await hold_with(on_double, "pm_card_visa", amount=800)
    intent_id = hold.provider_payment_id
    ref = HoldRef(intent_id)

    double.intents[intent_id]["status"] = "processing"
    assert (await on_double.get_hold(ref)).state is HoldState.REQUIRES_ACTION
    double.intents[intent_id]["status"] = "requires_capture"

    double.expire_authorization(intent_id)
    lapsed = await on_double.get_hold(ref)
    assert lapsed.state is HoldState.CANCELED
    assert lapsed.failure_message == "automatic"


async def test_partial_capture_sends_amount_to_capture(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    _, hold = await hold_with(on_double, "pm_card_visa", amount=10000)
    ref = HoldRef(hold.provider_payment_id)

    capture = await on_double.capture(
        ref=ref, amount=6500, currency="USD", idempotency_key="payment-77-capture"
    )

    (request,) = double.requests("POST", f"/v1/payment_intents/{hold.provider_payment_id}/capture")
    assert request.form == {
        "amount_to_capture": "6500",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
    }
    assert request.idempotency_key == f"{PREFIX}-payment-77-capture"
    charge_id = double.intents[hold.provider_payment_id]["latest_charge"]
    assert (capture.capture_id, capture.amount) == (charge_id, 6500)
    captured = await on_double.get_hold(ref)
    assert (captured.state, captured.amount, captured.captured_amount) == (
        HoldState.CAPTURED,
        10000,
        6500,
    )

    # Replayed by Stripe under the same key; and with the key forgotten, Stripe's
    # unexpected-state refusal is resolved by reading the intent.
    replay = await on_double.capture(
        ref=ref, amount=6500, currency="USD", idempotency_key="payment-77-capture"
    )
    late = await on_double.capture(
        ref=ref, amount=6500, currency="USD", idempotency_key="payment-77-capture-again"
    )
    assert replay == late == capture
    with pytest.raises(ProviderError) as other_amount:
        await on_double.capture(ref=ref, amount=7000, currency="USD", idempotency_key="k-7000")
    assert other_amount.value.code == "payment_intent_unexpected_state"


async def test_cancel_twice_is_not_an_error(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    _, hold = await hold_with(on_double, "pm_card_visa")
    ref = HoldRef(hold.provider_payment_id)

    await on_double.cancel(ref=ref, idempotency_key="payment-3-cancel")
    await on_double.cancel(ref=ref, idempotency_key="payment-3-cancel-again")

    assert double.intents[hold.provider_payment_id]["status"] == "canceled"
    first, second = double.requests(
        "POST", f"/v1/payment_intents/{hold.provider_payment_id}/cancel"
    )
    assert (first.idempotency_key, second.idempotency_key) == (
        f"{PREFIX}-payment-3-cancel",
        f"{PREFIX}-payment-3-cancel-again",
    )
    assert first.form == {}


async def test_refund_sends_payment_intent_and_amount(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    _, hold = await hold_with(on_double, "pm_card_visa", amount=5000)
    ref = HoldRef(hold.provider_payment_id)
    await on_double.capture(
        ref=ref, amount=5000, currency="USD", idempotency_key="payment-1-capture"
    )

    refund = await on_double.refund(
        ref=ref, amount=1250, currency="USD", idempotency_key="refund-1"
    )

    (request,) = double.requests("POST", "/v1/refunds")
    assert request.form == {
        "payment_intent": hold.provider_payment_id,
        "amount": "1250",
        "expand[0]": "balance_transaction",
    }
    assert request.idempotency_key == f"{PREFIX}-refund-1"
    assert refund.amount == 1250
    assert refund.refund_id in double.refunds
    assert (await on_double.get_hold(ref)).refunded_amount == 1250
    with pytest.raises(ProviderError) as too_much:
        await on_double.refund(ref=ref, amount=3751, currency="USD", idempotency_key="refund-2")
    assert too_much.value.code == "amount_too_large"


# --- Connect ---------------------------------------------------------------------------------


async def test_connected_account_and_onboarding_link(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    account_id = await on_double.create_connected_account(worker_id=12, email="w@example.test")
    again = await on_double.create_connected_account(worker_id=12, email="w@example.test")

    assert again == account_id  # replayed under connect-account-12, not a second account
    assert list(double.accounts) == [account_id]
    first, second = double.requests("POST", "/v1/accounts")
    assert first.form == {
        "type": "express",
        "email": "w@example.test",
        "capabilities[transfers][requested]": "true",
        "metadata[worker_id]": "12",
        "metadata[reference]": f"{PREFIX}-worker-12",
    }
    assert first.idempotency_key == second.idempotency_key == f"{PREFIX}-connect-account-12"

    url = await on_double.create_account_link(
        account_id=account_id,
        refresh_url="https://app.example.test/connect/refresh",
        return_url="https://app.example.test/connect/done",
    )
    (link,) = double.requests("POST", "/v1/account_links")
    assert link.form == {
        "account": account_id,
        "refresh_url": "https://app.example.test/connect/refresh",
        "return_url": "https://app.example.test/connect/done",
        "type": "account_onboarding",
    }
    assert url == double.account_links[0]["url"]
    assert url.startswith(f"https://connect.stripe.com/setup/e/{account_id}/")


async def test_payout_is_a_transfer_keyed_by_payout_id(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    account = double.add_account()
    order = PayoutOrder(payout_id=314, destination=account, amount=4750, currency="USD")

    transfer = await on_double.send_payout(order)

    (request,) = double.requests("POST", "/v1/transfers")
    assert request.form == {
        "amount": "4750",
        "currency": "usd",
        "destination": account,
        "transfer_group": f"{PREFIX}-payout-314",
        "metadata[payout_id]": "314",
        "metadata[reference]": f"{PREFIX}-payout-314",
    }
    assert request.idempotency_key == f"{PREFIX}-payout-314"
    assert transfer.state is TransferState.SUCCEEDED
    assert (transfer.amount, transfer.currency) == (4750, "USD")
    assert transfer.transfer_id in double.transfers
    assert double.account_balances[account] == {"usd": 4750}


async def test_transfer_whose_answer_was_lost_is_found_not_sent_twice(
    double: StripeDouble,
) -> None:
    adapter = StripeProvider(
        make_settings(
            secret_key=double.secret_key, api_base=double.url, provider_timeout_seconds=0.5
        ),
        max_network_retries=0,
    )
    try:
        account = double.add_account()
        order = PayoutOrder(payout_id=2718, destination=account, amount=12000, currency="USD")
        double.hang_next("POST", "/v1/transfers", after_effect=True)

        with pytest.raises(ProviderUnavailableError):
            await adapter.send_payout(order)
        assert len(double.transfers) == 1  # Stripe did act; we just never heard

        found = await adapter.find_payout(order)
        assert found is not None
        (made,) = double.transfers.values()
        assert (found.transfer_id, found.amount, found.state) == (
            made["id"],
            12000,
            TransferState.SUCCEEDED,
        )
        (listing,) = double.requests("GET", "/v1/transfers")
        assert listing.query == {"transfer_group": f"{PREFIX}-payout-2718", "limit": "10"}

        # Sending again under payout-2718 is replayed, never a second transfer.
        resent = await adapter.send_payout(order)
        assert resent.transfer_id == made["id"]
        assert len(double.transfers) == 1
        other = PayoutOrder(payout_id=2719, destination=account, amount=12000, currency="USD")
        assert await adapter.find_payout(other) is None
    finally:
        await adapter.aclose()


async def test_reverse_transfer_and_insufficient_connected_balance(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    account = double.add_account()
    transfer = await on_double.send_payout(
        PayoutOrder(payout_id=8, destination=account, amount=9000, currency="USD")
    )

    reversal = await on_double.reverse_transfer(
        transfer_id=transfer.transfer_id, amount=3000, idempotency_key="refund-55-reversal"
    )

    (request,) = double.requests("POST", f"/v1/transfers/{transfer.transfer_id}/reversals")
    assert request.form == {"amount": "3000"}
    assert request.idempotency_key == f"{PREFIX}-refund-55-reversal"
    assert reversal.refund_id.startswith("trr_")
    assert reversal.amount == 3000
    assert double.transfers[transfer.transfer_id]["amount_reversed"] == 3000

    # The worker already paid the rest out to the bank: the account cannot cover it.
    double.set_account_balance(account, "usd", 1000)
    with pytest.raises(ProviderError) as refused:
        await on_double.reverse_transfer(
            transfer_id=transfer.transfer_id, amount=6000, idempotency_key="refund-56-reversal"
        )
    assert refused.value.code == "balance_insufficient"
    assert double.transfers[transfer.transfer_id]["amount_reversed"] == 3000


async def test_payout_refused_when_platform_balance_is_short(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    account = double.add_account()
    double.platform_balance["usd"] = 100
    with pytest.raises(ProviderError) as refused:
        await on_double.send_payout(
            PayoutOrder(payout_id=9, destination=account, amount=101, currency="USD")
        )
    assert refused.value.code == "balance_insufficient"
    assert double.transfers == {}


# --- errors ----------------------------------------------------------------------------------


async def test_card_error_is_payment_declined_with_decline_code(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    with pytest.raises(PaymentDeclinedError) as declined:
        await hold_with(on_double, "pm_card_chargeDeclinedInsufficientFunds")

    assert declined.value.code == "insufficient_funds"
    assert declined.value.message == "Your card has insufficient funds."
    (intent,) = double.intents.values()
    failed = await on_double.get_hold(HoldRef(intent["id"]))
    assert failed.state is HoldState.FAILED
    assert failed.failure_message == "Your card has insufficient funds."


async def test_rate_limit_is_retried_with_the_same_key_then_succeeds(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    account = double.add_account()
    double.rate_limit_next("POST", "/v1/transfers", times=2)

    transfer = await on_double.send_payout(
        PayoutOrder(payout_id=21, destination=account, amount=500, currency="USD")
    )

    attempts = double.requests("POST", "/v1/transfers")
    assert [a.idempotency_key for a in attempts] == [f"{PREFIX}-payout-21"] * 3
    assert transfer.amount == 500
    assert len(double.transfers) == 1


async def test_rate_limit_retries_are_bounded(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    double.rate_limit_next("POST", "/v1/payment_intents", times=10)

    with pytest.raises(ProviderUnavailableError):
        await hold_with(on_double, "pm_card_visa")

    # One call and the default three retries.
    assert len(double.requests("POST", "/v1/payment_intents")) == 4
    assert double.intents == {}


async def test_server_error_is_unavailable_and_sdk_retries_keep_the_key(
    double: StripeDouble,
) -> None:
    adapter = StripeProvider(
        make_settings(secret_key=double.secret_key, api_base=double.url), max_network_retries=1
    )
    try:
        double.api_error_next("POST", "/v1/payment_intents", times=2)
        with pytest.raises(ProviderUnavailableError):
            await hold_with(adapter, "pm_card_visa")
        first, retry = double.requests("POST", "/v1/payment_intents")
        assert first.idempotency_key == retry.idempotency_key is not None
        assert first.form == retry.form
    finally:
        await adapter.aclose()


async def test_invalid_request_is_provider_error_with_code(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    double.fail_next(
        "POST",
        "/v1/accounts",
        status=400,
        error={
            "type": "invalid_request_error",
            "code": "email_invalid",
            "message": "Invalid email address: nope",
            "param": "email",
        },
    )
    with pytest.raises(ProviderError) as refused:
        await on_double.create_connected_account(worker_id=3, email="nope")
    assert (refused.value.code, refused.value.message) == (
        "email_invalid",
        "Invalid email address: nope",
    )
    assert not isinstance(refused.value, PaymentDeclinedError)


async def test_timeout_is_unavailable(double: StripeDouble) -> None:
    adapter = StripeProvider(
        make_settings(
            secret_key=double.secret_key, api_base=double.url, provider_timeout_seconds=0.3
        ),
        max_network_retries=1,
    )
    try:
        double.hang_next("POST", "/v1/payment_intents", after_effect=False, times=2)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailableError):
            await hold_with(adapter, "pm_card_visa")
        assert time.monotonic() - started < 5
        first, retry = double.requests("POST", "/v1/payment_intents")
        assert first.idempotency_key == retry.idempotency_key is not None
        assert double.intents == {}
    finally:
        await adapter.aclose()


async def test_fees_come_from_the_balance_transactions_and_the_statement_is_paged(
    on_double: StripeProvider, double: StripeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture's fee is its charge's balance transaction `fee` (expanded), the refund's
    fee given back is minus its own; the statement reads every page of
    GET /v1/balance_transactions."""
    _, hold = await hold_with(on_double, "pm_card_visa", amount=10000)
    ref = HoldRef(hold.provider_payment_id)
    capture = await on_double.capture(
        ref=ref, amount=10000, currency="USD", idempotency_key="payment-9-capture"
    )
    # 2.9% of 100.00 + 0.30.
    assert capture.fee == 320
    assert (await on_double.get_hold(ref)).fee == 320
    refund = await on_double.refund(
        ref=ref, amount=4000, currency="USD", idempotency_key="payment-9-refund-1"
    )
    assert refund.fee_refunded == 0

    monkeypatch.setattr(stripe_statements, "PAGE_SIZE", 1)
    since = datetime.now(UTC) - timedelta(minutes=5)
    lines = await on_double.statement(since, datetime.now(UTC) + timedelta(minutes=1))
    charge_id = double.intents[hold.provider_payment_id]["latest_charge"]
    mine = sorted(
        (x.kind, x.reference, x.amount, x.fee, x.currency)
        for x in lines
        if x.reference in (charge_id, refund.refund_id)
    )
    assert mine == sorted(
        [
            (StatementKind.CAPTURE, charge_id, 10000, 320, "USD"),
            (StatementKind.REFUND, refund.refund_id, -4000, 0, "USD"),
        ]
    )
    # One line a page: as many requests as lines, each after the first from the last id.
    pages = double.requests("GET", "/v1/balance_transactions")
    assert len(pages) == len(lines) >= 2
    assert "starting_after[0]" not in pages[0].query and "starting_after" not in pages[0].query
    assert [p.query.get("starting_after") for p in pages[1:]] == [x.line_id for x in lines[:-1]]


# --- saved cards and off-session charges (recurring bookings) -----------------------------


async def setup_intent(raw: stripe.StripeClient) -> str:
    """A customer's off-session SetupIntent, made with the parameters localstripe knows
    (it refuses `allowed_payment_method_types`, which the adapter sends: the double checks
    the adapter's own request)."""
    customer = await raw.v1.customers.create_async({"email": "payer@example.com"})
    setup = await raw.v1.setup_intents.create_async(
        {"customer": customer.id, "usage": "off_session", "payment_method_types": ["card"]}
    )
    return str(setup.id)


async def test_a_card_saved_by_a_setup_intent_is_held_off_session(
    provider: StripeProvider, raw: stripe.StripeClient
) -> None:
    setup = await provider.get_setup(await setup_intent(raw), reference="recurring-1")
    assert setup.state is SetupState.PENDING
    assert setup.customer.startswith("cus_") and setup.client_secret

    # What Stripe.js confirmSetup does in the payer's browser.
    await raw.v1.setup_intents.confirm_async(setup.setup_id, {"payment_method": PM_VISA})
    saved = await provider.get_setup(setup.setup_id, reference="recurring-1")
    assert saved.state is SetupState.SUCCEEDED and saved.payment_method

    payment_id = new_id()
    hold = await provider.create_hold(
        NewHold(
            payment_id=payment_id,
            booking_id=payment_id + 1,
            amount=4500,
            currency="USD",
            payment_method=saved.payment_method,
            customer=saved.customer,
        ),
        idempotency_key=f"payment-{payment_id}-hold",
    )
    assert (hold.state, hold.amount, hold.currency) == (HoldState.AUTHORIZED, 4500, "USD")


async def test_an_off_session_charge_of_a_card_that_attaches_then_fails_is_declined(
    provider: StripeProvider, raw: stripe.StripeClient
) -> None:
    setup = await provider.get_setup(await setup_intent(raw), reference="recurring-1")
    await raw.v1.setup_intents.confirm_async(setup.setup_id, {"payment_method": PM_CHARGE_FAILS})
    saved = await provider.get_setup(setup.setup_id, reference="recurring-1")
    assert saved.state is SetupState.SUCCEEDED and saved.payment_method
    payment_id = new_id()
    with pytest.raises(PaymentDeclinedError):
        await provider.create_hold(
            NewHold(
                payment_id=payment_id,
                booking_id=payment_id + 1,
                amount=4500,
                currency="USD",
                payment_method=saved.payment_method,
                customer=saved.customer,
            ),
            idempotency_key=f"payment-{payment_id}-hold",
        )


async def test_an_off_session_hold_sends_the_customer_and_off_session(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    await on_double.create_hold(
        NewHold(
            payment_id=77,
            booking_id=78,
            amount=12345,
            currency="KWD",
            payment_method="pm_card_visa",
            customer="cus_Saved",
        ),
        idempotency_key="payment-77-hold",
    )
    (sent,) = double.requests("POST", "/v1/payment_intents")
    assert sent.form == {
        "amount": "12345",
        "currency": "kwd",
        "capture_method": "manual",
        "metadata[payment_id]": "77",
        "metadata[booking_id]": "78",
        "metadata[reference]": f"{PREFIX}-payment-77",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
        "payment_method": "pm_card_visa",
        "confirm": "true",
        "automatic_payment_methods[enabled]": "true",
        "automatic_payment_methods[allow_redirects]": "never",
        "customer": "cus_Saved",
        "off_session": "true",
    }
    assert sent.idempotency_key == f"{PREFIX}-payment-77-hold"


async def test_a_setup_is_a_customer_and_an_off_session_setup_intent_under_our_keys(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    setup = await on_double.create_setup(reference="recurring-9", email="payer@example.com")
    again = await on_double.create_setup(reference="recurring-9", email="payer@example.com")

    assert again == setup  # replayed under the same keys: one customer, one SetupIntent
    assert (len(double.customers), len(double.setup_intents)) == (1, 1)
    customer, setup_intent = (
        double.requests("POST", "/v1/customers")[0],
        double.requests("POST", "/v1/setup_intents")[0],
    )
    assert customer.form == {
        "email": "payer@example.com",
        "metadata[reference]": f"{PREFIX}-recurring-9",
    }
    assert customer.idempotency_key == f"{PREFIX}-recurring-9-customer"
    assert setup_intent.form == {
        "customer": setup.customer,
        "usage": "off_session",
        "allowed_payment_method_types[0]": "card",
        "metadata[reference]": f"{PREFIX}-recurring-9",
    }
    assert setup_intent.idempotency_key == f"{PREFIX}-recurring-9-setup"
    assert (setup.state, setup.payment_method) == (SetupState.PENDING, None)
    assert setup.client_secret == double.setup_intents[setup.setup_id]["client_secret"]
