"""PayPal for real, webhooks: verified by PayPal's API or offline with a certificate,
stored once, and what they finish (a lost execute, captures and voids made at PayPal).

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

from datetime import timedelta

import httpx

from handwork_payments.kit.clock import now
from handwork_payments.models import DeliveryStatus, HoldKind
from handwork_payments.payments import background
from handwork_payments.providers.base import HoldRef
from handwork_payments.providers.paypal import PayPalProvider
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.faults import payment_row
from tests.helpers import Api
from tests.peers.paypal_double import PayPalDouble
from tests.providers.paypal.harness import (
    CERT_URL,
    PAYER_ID,
    alerts_of,
    assert_spec_checked,
    calls,
    deliver,
    deliveries,
    event_body,
    execute,
    held,
    paypal,
    paypal_order,
    paypal_settings,
    post_webhook,
    service,
    signed,
    the_authorization,
    throwaway_certificate,
)


async def test_webhooks_verified_by_paypals_api_and_stored_once(
    api: Api, double: PayPalDouble, database_url: str
) -> None:
    client, _pro, payment = await held(api, double, "60.00")
    auth = the_authorization(double, payment["paypal_payment_id"])
    headers, body = double.deliver(
        "PAYMENT.AUTHORIZATION.CREATED", double.authorization_resource(auth["id"])
    )
    r = await post_webhook(api, headers, body)
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False}
    [verify] = calls(double, "webhooks.verify")
    assert verify.status == 200
    # PayPal delivers again (it retries until it gets a 2xx in time): stored once.
    r = await post_webhook(api, headers, body)
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": True}
    [stored] = await deliveries(api.runtime)
    assert (stored.provider, stored.event_type) == ("paypal", "PAYMENT.AUTHORIZATION.CREATED")
    assert stored.headers["paypal-transmission-id"] == headers["PAYPAL-TRANSMISSION-ID"]
    assert "authorization" not in stored.headers
    processed = await webhooks.process(api.runtime, stored.id)
    assert processed is not None and processed.status == DeliveryStatus.PROCESSED
    assert (await api.get(f"/payments/{payment['id']}", client))["status"] == "held"

    # Not from PayPal: 400, nothing stored.
    headers, body = double.deliver(
        "PAYMENT.AUTHORIZATION.VOIDED", double.authorization_resource(auth["id"])
    )
    tampered = body.replace(b'"60.00"', b'"6.00"')
    assert tampered != body
    r = await post_webhook(api, headers, tampered)
    assert r.status_code == 400 and set(r.json()) == {"detail"}
    assert "signature" in r.json()["detail"]
    r = await post_webhook(api, {"PAYPAL-TRANSMISSION-ID": headers["PAYPAL-TRANSMISSION-ID"]}, body)
    assert r.status_code == 400
    r = await post_webhook(api, headers, b"[1, 2]")
    assert r.status_code == 400
    # Signed for another webhook (ours is another id): PayPal says FAILURE.
    other = Runtime.build(
        paypal_settings(database_url, double, paypal_webhook_id="9XL90610J3647323C"), database_url
    )
    try:
        async with service(other) as other_api:
            r = await post_webhook(other_api, headers, body)
            assert r.status_code == 400, r.text
    finally:
        await other.aclose()
    assert len(await deliveries(api.runtime)) == 1
    verdicts = [c.status for c in calls(double, "webhooks.verify")]
    assert verdicts and set(verdicts) == {200}
    assert_spec_checked(double, "webhooks.verify")


async def test_an_execute_whose_answer_was_lost_is_held_by_the_authorization_webhook(
    api: Api, double: PayPalDouble
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "45.00")
    created = await paypal_order(api, client, booking)
    double.approve(created["paypal_payment_id"], payer_id=PAYER_ID)
    double.fail_next("orders.authorize", "timeout_after")
    r = await execute(api, client, created)
    assert r.status_code == 502, r.text
    assert (await api.get(f"/payments/{created['id']}", client))["status"] == "pending"
    auth = the_authorization(double, created["paypal_payment_id"])
    await deliver(
        api, double, "PAYMENT.AUTHORIZATION.CREATED", double.authorization_resource(auth["id"])
    )
    row = await payment_row(api.runtime, created["id"])
    assert (row.status, row.hold_kind, row.provider_authorization_id) == (
        "held",
        HoldKind.AUTHORIZED,
        auth["id"],
    )
    # The payer's retry of execute answers the held payment; PayPal authorised once.
    r = await execute(api, client, created)
    assert r.status_code == 200 and r.json()["status"] == "held"
    assert len(calls(double, "orders.authorize")) == 1
    assert (await api.earnings(pro))["pending_balance"] == "42.75"


async def test_capture_in_paypals_dashboard_and_voids_of_replaced_authorizations(
    api: Api, double: PayPalDouble
) -> None:
    client, pro, payment = await held(api, double, "90.00")
    # The hold guard renews the authorisation: PayPal voids the original and says so.
    original = the_authorization(double, payment["paypal_payment_id"])
    double.advance(days=4)
    report = await background.guard_holds(api.runtime, now=now() + timedelta(days=4))
    assert report.reauthorized == [payment["id"]]
    await deliver(
        api, double, "PAYMENT.AUTHORIZATION.VOIDED", double.authorization_resource(original["id"])
    )
    assert await alerts_of(api.runtime, "authorization_lapsed") == []

    # Someone captures the renewed authorisation in PayPal's dashboard.
    renewed = the_authorization(double, payment["paypal_payment_id"])
    ref = HoldRef(payment["paypal_payment_id"], renewed["id"])
    captured = await paypal(api).capture(
        ref=ref, amount=9000, currency="USD", idempotency_key="dashboard-capture-1"
    )
    await deliver(
        api, double, "PAYMENT.CAPTURE.COMPLETED", double.capture_resource(captured.capture_id)
    )
    row = await payment_row(api.runtime, payment["id"])
    assert (row.status, row.hold_kind, row.provider_capture_id, row.captured_amount) == (
        "held",
        HoldKind.CAPTURED,
        captured.capture_id,
        9000,
    )
    assert row.capture_by is None
    # Releasing now needs no call to PayPal.
    before = len(calls(double, "authorizations.capture"))
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert len(calls(double, "authorizations.capture")) == before
    # Its webhook again (a new delivery of the same capture) changes nothing.
    await deliver(
        api, double, "PAYMENT.CAPTURE.COMPLETED", double.capture_resource(captured.capture_id)
    )
    assert (await api.earnings(pro))["available_balance"] == "85.50"

    # A voided authorisation that is still the one holding a payment is news.
    _, _, other = await held(api, double, "20.00")
    auth = the_authorization(double, other["paypal_payment_id"])
    with double.lock:
        auth["status"] = "VOIDED"
    await deliver(
        api, double, "PAYMENT.AUTHORIZATION.VOIDED", double.authorization_resource(auth["id"])
    )
    [lapsed] = await alerts_of(api.runtime, "authorization_lapsed")
    assert f"Payment #{other['id']}" in lapsed


async def test_webhooks_verified_offline_with_a_throwaway_certificate(
    runtime: Runtime, database_url: str, double: PayPalDouble
) -> None:
    """PAYPAL_WEBHOOK_VERIFICATION=offline: CRC32 of the body, transmission id and time,
    our webhook id, SHA256withRSA with the certificate at PAYPAL-CERT-URL - a paypal.com
    https address, downloaded once and cached. PayPal's verify API is never called."""
    key, pem = throwaway_certificate()
    downloads: list[str] = []

    def serve_cert(request: httpx.Request) -> httpx.Response:
        downloads.append(str(request.url))
        return httpx.Response(200, content=pem)

    settings = paypal_settings(database_url, double, paypal_webhook_verification="offline")
    built = Runtime.build(settings, database_url)
    provider = built.providers.paypal
    assert isinstance(provider, PayPalProvider)
    # The real downloader and its cache, its network replaced by one that serves our
    # certificate for the paypal.com address (no test reaches paypal.com).
    await provider.client._cert_http.aclose()
    provider.client._cert_http = httpx.AsyncClient(transport=httpx.MockTransport(serve_cert))
    webhook_id = double.webhook_id
    try:
        async with service(built) as api:
            _client, _pro, payment = await held(api, double, "33.00")
            auth = the_authorization(double, payment["paypal_payment_id"])
            resource = double.authorization_resource(auth["id"])

            body = event_body("PAYMENT.AUTHORIZATION.CREATED", resource)
            r = await post_webhook(api, signed(key, body, webhook_id, CERT_URL), body)
            assert r.status_code == 200, r.text
            assert r.json() == {"received": True, "duplicate": False}
            lowered = {k.lower(): v for k, v in signed(key, body, webhook_id, CERT_URL).items()}
            r = await post_webhook(api, lowered, body)
            assert r.status_code == 200 and r.json()["duplicate"] is True
            assert downloads == [CERT_URL]  # cached

            other = event_body("PAYMENT.AUTHORIZATION.VOIDED", resource)
            refused = {
                "tampered body": (
                    signed(key, other, webhook_id, CERT_URL),
                    other.replace(b'"33.00"', b'"3.00"'),
                ),
                "another webhook id": (signed(key, other, "9XL90610J3647323C", CERT_URL), other),
                "another key": (
                    signed(throwaway_certificate()[0], other, webhook_id, CERT_URL),
                    other,
                ),
                "a certificate URL off paypal.com": (
                    signed(key, other, webhook_id, "https://paypal.com.evil.example/cert.pem"),
                    other,
                ),
                "a certificate URL over http": (
                    signed(key, other, webhook_id, CERT_URL.replace("https:", "http:")),
                    other,
                ),
            }
            for why, (headers, content) in refused.items():
                r = await post_webhook(api, headers, content)
                assert r.status_code == 400, why
                assert "signature" in r.json()["detail"], why
            assert downloads == [CERT_URL]  # nothing fetched from anywhere else
            [stored] = await deliveries(built)
            assert stored.event_type == "PAYMENT.AUTHORIZATION.CREATED"
            processed = await webhooks.process(built, stored.id)
            assert processed is not None and processed.status == DeliveryStatus.PROCESSED
    finally:
        await built.aclose()
    assert calls(double, "webhooks.verify") == []
    assert_spec_checked(double)
