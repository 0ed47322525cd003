"""The PayPal integration suite's settings, service and steps: an order created,
approved at the double and executed; webhooks signed and delivered; what PayPal was asked."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from handwork_payments.app import create_app
from handwork_payments.kit.clock import now
from handwork_payments.models import Alert, DeliveryStatus, WebhookDelivery
from handwork_payments.providers.paypal import PayPalProvider
from handwork_payments.providers.paypal import events as paypal_events
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.conftest import make_settings
from tests.helpers import Api, Party
from tests.peers.paypal_double import PayPalDouble

CLIENT_TIMEOUT_SECONDS = 1.0
PAYER_ID = "QYR5Z8XDVJNXQ"
RETURN_URL = "https://app.example.com/payment/success"
CANCEL_URL = "https://app.example.com/payment/cancel"
WEBHOOKS = "/api/v1/payments/webhooks/paypal"
# Starts every id the service sends PayPal (PROVIDER_ID_PREFIX).
PREFIX = "hwpp"


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    else:
        reporter.write_line(line)


def paypal_settings(database_url: str, double: PayPalDouble, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "paypal_client_id": double.client_id,
        "paypal_client_secret": double.client_secret,
        "paypal_mode": "sandbox",
        "paypal_api_base": double.url,
        "paypal_webhook_id": double.webhook_id,
        "paypal_webhook_verification": "api",
        "provider_timeout_seconds": CLIENT_TIMEOUT_SECONDS,
        "worker_poll_seconds": 0.2,
        "provider_id_prefix": PREFIX,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@asynccontextmanager
async def service(runtime: Runtime) -> AsyncIterator[Api]:
    """Our HTTP API over `runtime`, as its users reach it."""
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, runtime)


def assert_spec_checked(double: PayPalDouble, *operations: str) -> None:
    if double.validator is None or not double.validator.enabled:
        return  # the session fixture has warned, loudly
    assert double.calls, "the test never talked to PayPal"
    assert double.validated == len(double.calls), "an exchange escaped the spec validation"
    for operation in operations:
        assert double.validated_ops[operation] > 0, f"{operation} was never validated"
    assert double.violations == [], "\n".join(double.violations)


def calls(double: PayPalDouble, operation: str) -> list[Any]:
    return [c for c in double.calls if c.operation == operation]


def paypal(api: Api) -> PayPalProvider:
    provider = api.runtime.providers.paypal
    assert isinstance(provider, PayPalProvider)
    return provider


# --------------------------------------------------------------------------- helpers


async def paypal_order(
    api: Api, client: Party, booking: dict[str, Any], currency: str = "USD"
) -> dict[str, Any]:
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": booking["amount"],
            "currency": currency.lower(),
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        },
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    assert created["status"] == "pending"
    # The approval URL is PayPal's checkout page for the order we store.
    approval = urlsplit(created["approval_url"])
    assert approval.scheme == "https" and approval.hostname == "www.sandbox.paypal.com"
    assert parse_qs(approval.query)["token"] == [created["paypal_payment_id"]]
    return created


async def execute(
    api: Api, client: Party, created: dict[str, Any], payer_id: str = PAYER_ID
) -> httpx.Response:
    return await api.post(
        "/payments/paypal/execute",
        client,
        {
            "payment_id": created["paypal_payment_id"],
            "payer_id": payer_id,
            "booking_id": created["booking_id"],
        },
    )


async def held(
    api: Api, double: PayPalDouble, amount: str = "150.00"
) -> tuple[Party, Party, dict[str, Any]]:
    """A client, a worker and a PayPal payment held between them: created over our API,
    approved by the buyer at (the double of) PayPal, executed over our API."""
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, amount)
    created = await paypal_order(api, client, booking)
    double.approve(created["paypal_payment_id"], payer_id=PAYER_ID)
    r = await execute(api, client, created)
    assert r.status_code == 200, r.text
    payment: dict[str, Any] = r.json()
    assert payment["status"] == "held", payment
    return client, pro, payment


async def released(
    api: Api, double: PayPalDouble, amount: str = "100.00"
) -> tuple[Party, Party, dict[str, Any]]:
    client, pro, payment = await held(api, double, amount)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released"
    return client, pro, r.json()


def the_authorization(double: PayPalDouble, order_id: str) -> dict[str, Any]:
    [auth_id] = [a for a in double.orders[order_id]["authorization_ids"]][-1:]
    return double.authorizations[auth_id]


def stale(api: Api) -> datetime:
    return now() + timedelta(seconds=api.runtime.settings.provider_operation_stale_seconds + 1)


# --------------------------------------------------------------------------- webhooks


async def post_webhook(api: Api, headers: dict[str, str], body: bytes) -> httpx.Response:
    return await api.client.post(
        WEBHOOKS, content=body, headers={**headers, "Content-Type": "application/json"}
    )


async def deliveries(runtime: Runtime) -> list[WebhookDelivery]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return list(rows.all())


async def deliver(
    api: Api, double: PayPalDouble, event_type: str, resource: dict[str, Any]
) -> WebhookDelivery:
    """PayPal POSTs a signed event to our endpoint; its processing job runs (the job's
    body, here, so that the test decides when)."""
    headers, body = double.deliver(event_type, resource)
    r = await post_webhook(api, headers, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "duplicate": False}
    event_id = json.loads(body)["id"]
    [stored] = [d for d in await deliveries(api.runtime) if d.event_id == event_id]
    processed = await webhooks.process(api.runtime, stored.id)
    assert processed is not None
    assert processed.status == DeliveryStatus.PROCESSED, processed.last_error
    return processed


async def alerts_of(runtime: Runtime, kind: str) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(Alert.message).where(Alert.kind == kind))
        return list(rows.all())


def throwaway_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    """A key and a self-signed certificate made for this test only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.test")])
    moment = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(days=1))
        .not_valid_after(moment + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def signed(key: rsa.RSAPrivateKey, body: bytes, webhook_id: str, cert_url: str) -> dict[str, str]:
    transmission_id = str(uuid.uuid4())
    transmission_time = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = paypal_events.signed_message(transmission_id, transmission_time, webhook_id, body)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": transmission_time,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def event_body(event_type: str, resource: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"WH-{secrets.token_hex(8).upper()}",
            "event_version": "1.0",
            "create_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "event_type": event_type,
            "resource_type": event_type.split(".")[-2].lower(),
            "summary": event_type,
            "resource": resource,
        }
    ).encode()


CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-test"


async def payouts_to(
    api: Api, double: PayPalDouble, receivers: list[tuple[str, str]]
) -> tuple[Party, Party, list[dict[str, Any]]]:
    """A worker with 95.00 available (a released PayPal payment of 100.00) who requests one
    payout per (PayPal email, amount), each processed by an admin. The double settles each
    item by its receiver's tag (+fail, +unclaimed, +returned; else SUCCESS)."""
    _, pro, _ = await released(api, double, "100.00")
    admin = await api.admin()
    requested = []
    for email, amount in receivers:
        r = await api.client.put(
            "/api/v1/payments/payout-methods", json={"paypal_email": email}, headers=pro.headers
        )
        assert r.status_code == 200, r.text
        r = await api.post(
            "/payments/payouts/request", pro, {"amount": amount, "payment_method": "paypal"}
        )
        assert r.status_code == 201, r.text
        requested.append(r.json())
    for payout in requested:
        r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
        assert r.status_code == 200 and r.json()["status"] == "processing", r.text
    return pro, admin, requested
