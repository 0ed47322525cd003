"""Malformed and forged webhooks: every one a 400 with a detail, nothing stored (issue 9).

- Stripe-Signature with a non-ASCII `v1=` or a non-ASCII digit in `t=`;
- signed Stripe events of another shape (a list as data.object, an integer id), or whose
  id / type does not fit our columns;
- PayPal (offline verification): a genuine delivery's headers replayed after the
  transmission-time window, or with a forged body whose CRC32 matches the signed one;
  a deeply nested body (the parser's recursion limit) is refused, never a 500.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from handwork_payments.kit.errors import BadRequest
from handwork_payments.models import WebhookDelivery
from handwork_payments.providers import stripe_events
from handwork_payments.providers.base import InvalidSignatureError
from handwork_payments.providers.paypal import PayPalProvider
from handwork_payments.providers.paypal.events import signed_message
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.conftest import TEST_WEBHOOK_SECRET, make_settings
from tests.helpers import Api

STRIPE_WEBHOOK = "/api/v1/payments/webhooks/stripe"
PAYPAL_WEBHOOK = "/api/v1/payments/webhooks/paypal"
PAYPAL_CERT = "https://api.paypal.com/v1/notifications/certs/CERT-test"
WEBHOOK_ID = "1JE4291016473214C"


async def stored_deliveries(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


def stripe_event(**overrides: Any) -> bytes:
    event: dict[str, Any] = {
        "id": "evt_hardening_1",
        "type": "payment_intent.created",
        "data": {"object": {"id": "pi_unknown", "amount": 1000}},
    }
    event.update(overrides)
    return json.dumps(event).encode()


# --- Stripe -------------------------------------------------------------------------------


def test_a_malformed_stripe_signature_is_an_invalid_signature() -> None:
    body = stripe_event()
    good = stripe_events.sign(body, TEST_WEBHOOK_SECRET)
    stripe_events.verify(body, good, TEST_WEBHOOK_SECRET, 300)
    t = good.split(",")[0]
    for header in (f"{t},v1=\u00e9\u00e9", "t=\u00b2,v1=abc", f"{t},v1=\u0663"):
        with pytest.raises(InvalidSignatureError):
            stripe_events.verify(body, header, TEST_WEBHOOK_SECRET, 300)


async def test_malformed_stripe_signature_headers_are_400(api: Api, runtime: Runtime) -> None:
    body = stripe_event()
    t = stripe_events.sign(body, TEST_WEBHOOK_SECRET).split(",")[0]
    # Raw bytes: the server reads header values as latin-1 ("\xb2" is "²", a digit).
    for header in (f"{t},v1=\u00e9".encode("latin-1"), b"t=\xb2,v1=abc"):
        r = await api.client.post(
            STRIPE_WEBHOOK, content=body, headers={"Stripe-Signature": header}
        )
        assert r.status_code == 400, (header, r.text)
        assert "signature" in r.json()["detail"]
    assert await stored_deliveries(runtime) == 0


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"data": {"object": [1, 2]}}, "not a Stripe event"),
        ({"id": 12345}, "not a Stripe event"),
        ({"data": []}, "not a Stripe event"),
        ({"id": "evt_" + "x" * 252}, "event id is longer than 255"),
        ({"type": "payment_intent." + "x" * 106}, "event type is longer than 120"),
        ({"id": "evt_\u0000"}, "NUL"),
    ],
)
async def test_signed_stripe_events_of_another_shape_are_400(
    api: Api, runtime: Runtime, overrides: dict[str, Any], detail: str
) -> None:
    body = stripe_event(**overrides)
    headers = {"Stripe-Signature": stripe_events.sign(body, TEST_WEBHOOK_SECRET)}
    r = await api.client.post(STRIPE_WEBHOOK, content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert detail in r.json()["detail"]
    assert await stored_deliveries(runtime) == 0


# --- PayPal, offline verification -----------------------------------------------------------


def throwaway_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts")])
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


KEY, PEM = throwaway_certificate()


def paypal_headers(body: bytes, *, sent: datetime | None = None, transmission_id: str) -> dict:
    when = (sent or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = KEY.sign(
        signed_message(transmission_id, when, WEBHOOK_ID, body), padding.PKCS1v15(), hashes.SHA256()
    )
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": when,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": PAYPAL_CERT,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def paypal_event(event_id: str, order_id: str = "ORDER-UNKNOWN") -> bytes:
    event = {
        "id": event_id,
        "event_type": "CHECKOUT.ORDER.APPROVED",
        "resource": {"id": order_id, "status": "APPROVED"},
    }
    return json.dumps(event).encode()


def same_crc32(body: bytes, target: bytes) -> bytes:
    """`body` padded with trailing JSON whitespace (spaces and tabs, which any JSON parser
    skips) so that its CRC32 is `target`'s: CRC32 is affine over GF(2), so choosing a tab
    or a space at each of 64 places solves 32 linear equations."""
    width = 64
    base = body + b" " * width
    want = zlib.crc32(target) ^ zlib.crc32(base)
    # For inputs of one length, crc(a ^ d) = crc(a) ^ lin(d): lin of a tab at each place.
    length = len(base)
    columns = []
    for i in range(width):
        flipped = bytearray(base)
        flipped[length - width + i] = 0x09
        columns.append(zlib.crc32(bytes(flipped)) ^ zlib.crc32(base))
    # An xor basis of the columns (each with the places it combines), then `want` in it.
    rows: list[tuple[int, int]] = []
    for i, col in enumerate(columns):
        mask = 1 << i
        for pivot_col, pivot_mask in rows:
            if col ^ pivot_col < col:
                col, mask = col ^ pivot_col, mask ^ pivot_mask
        if col:
            rows.append((col, mask))
            rows.sort(reverse=True)
    chosen = 0
    for pivot_col, pivot_mask in rows:
        if want ^ pivot_col < want:
            want, chosen = want ^ pivot_col, chosen ^ pivot_mask
    assert want == 0, "no solution with these 64 places"
    padded = bytearray(base)
    for i in range(width):
        if chosen >> i & 1:
            padded[length - width + i] = 0x09
    return bytes(padded)


@pytest.fixture
async def paypal_offline(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The live PayPal adapter, verifying offline with a throwaway certificate."""
    settings = make_settings(
        runtime.settings.database_url,
        paypal_client_id="client",
        paypal_client_secret="secret",
        paypal_api_base="http://127.0.0.1:9",  # never called: every check is offline
        paypal_webhook_id=WEBHOOK_ID,
        paypal_webhook_verification="offline",
    )

    async def fetch(url: str) -> bytes:
        assert url == PAYPAL_CERT
        return PEM

    provider = PayPalProvider(settings, fetch_cert=fetch, ids=runtime.providers.ids)
    monkeypatch.setattr(runtime.providers, "paypal", provider)
    yield
    await provider.aclose()


async def post_paypal(api: Api, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await api.client.post(PAYPAL_WEBHOOK, content=body, headers=headers)


async def test_a_paypal_delivery_outside_the_transmission_window_is_400(
    api: Api, runtime: Runtime, paypal_offline: None
) -> None:
    body = paypal_event("WH-OLD")
    old = paypal_headers(
        body, sent=datetime.now(UTC) - timedelta(seconds=301), transmission_id="T-old"
    )
    r = await post_paypal(api, body, old)
    assert r.status_code == 400 and "TRANSMISSION-TIME" in r.json()["detail"], r.text
    future = paypal_headers(
        body, sent=datetime.now(UTC) + timedelta(seconds=301), transmission_id="T-future"
    )
    assert (await post_paypal(api, body, future)).status_code == 400
    assert await stored_deliveries(runtime) == 0
    fresh = paypal_headers(body, transmission_id="T-fresh")
    r = await post_paypal(api, body, fresh)
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False}


async def test_a_forged_body_under_genuine_paypal_headers_is_400(
    api: Api, runtime: Runtime, paypal_offline: None
) -> None:
    genuine = paypal_event("WH-GENUINE", "ORDER-A")
    headers = paypal_headers(genuine, transmission_id="T-1")
    r = await post_paypal(api, genuine, headers)
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    # The same delivery again: the usual duplicate, no effect.
    r = await post_paypal(api, genuine, headers)
    assert r.status_code == 200 and r.json()["duplicate"] is True, r.text

    forged = same_crc32(paypal_event("WH-FORGED", "ORDER-B"), genuine)
    assert zlib.crc32(forged) == zlib.crc32(genuine) and forged != genuine
    assert json.loads(forged)["id"] == "WH-FORGED"  # still a well-formed event
    r = await post_paypal(api, forged, headers)
    assert r.status_code == 400, r.text
    assert "transmission was received already" in r.json()["detail"]
    async with runtime.sessions() as session:
        ids = (await session.scalars(select(WebhookDelivery.event_id))).all()
    assert ids == ["WH-GENUINE"]


async def test_a_deeply_nested_paypal_body_is_refused(
    api: Api, runtime: Runtime, paypal_offline: None
) -> None:
    depth = 100_000  # 200 KB of brackets: past the JSON parser's recursion limit
    nested = b'{"id":"WH-DEEP","event_type":"X","resource":' + b"[" * depth + b"]" * depth + b"}"
    # Over HTTP the request limits refuse it before any adapter reads it...
    for headers in ({}, paypal_headers(nested, transmission_id="T-deep")):
        r = await post_paypal(api, nested, headers)
        assert r.status_code == 422 and "nested deeper" in r.json()["detail"], r.text
    # ...and the adapter itself verifies before it parses, so it never recurses either.
    with pytest.raises(InvalidSignatureError, match="not a JSON event"):
        await runtime.providers.paypal.parse_event(
            paypal_headers(nested, transmission_id="T-deep"), nested
        )
    assert await stored_deliveries(runtime) == 0


async def test_receive_refuses_another_body_under_a_stored_transmission_id(
    runtime: Runtime, paypal_offline: None
) -> None:
    first = paypal_event("WH-1")
    headers = paypal_headers(first, transmission_id="T-same")
    stored, new = await webhooks.receive(runtime, "paypal", headers, first)
    assert new and stored is not None and stored.transmission_id == "T-same"
    second = same_crc32(paypal_event("WH-2"), first)
    with pytest.raises(BadRequest):
        await webhooks.receive(runtime, "paypal", headers, second)
    assert await stored_deliveries(runtime) == 1
