"""The real service over our HTTP API with PayPal for real: the PayPalProvider (httpx)
talking to the stateful PayPal double (tests/peers/paypal_double.py) served on 127.0.0.1,
every request and response validated against PayPal's official OpenAPI specs in
../shared/paypal-openapi/ (each test ends asserting that every exchange was validated and
none broke the specs); and, with PAYPAL_MODE=sandbox and sandbox credentials in the
environment, the flows that need no human buyer against PayPal's sandbox itself.

Exact amounts throughout; the ledger's invariants are checked after every test (conftest).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
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
from handwork_payments.models import (
    Alert,
    DeliveryStatus,
    HoldKind,
    PaymentDispute,
    PaymentRefund,
    WebhookDelivery,
    WorkerPayout,
)
from handwork_payments.payments import background
from handwork_payments.payouts import service as payouts
from handwork_payments.providers.base import HoldRef, ProviderUnavailableError
from handwork_payments.providers.paypal import PayPalProvider
from handwork_payments.providers.paypal import events as paypal_events
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from handwork_payments.worker import running_worker
from tests.conftest import make_settings
from tests.faults import audit_actions, payment_row, payout_row
from tests.helpers import Api, Party, eventually
from tests.peers.paypal_double import (
    PayPalDouble,
    SpecValidator,
    ValidatingTransport,
    iter_paypal_double,
)

CLIENT_TIMEOUT_SECONDS = 1.0
PAYER_ID = "QYR5Z8XDVJNXQ"
RETURN_URL = "https://app.example.com/payment/success"
CANCEL_URL = "https://app.example.com/payment/cancel"
WEBHOOKS = "/api/v1/payments/webhooks/paypal"
# Starts every id the service sends PayPal (PROVIDER_ID_PREFIX).
PREFIX = "hwpp"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def paypal_specs(pytestconfig: pytest.Config) -> Iterator[SpecValidator]:
    """PayPal's specs, loaded once; absent specs are said out loud, and the session ends
    with the counts of what was validated in this file."""
    validator = SpecValidator()
    if not validator.enabled:
        warnings.warn(pytest.PytestWarning(validator.reason), stacklevel=1)
        _say(pytestconfig, f"NOTE: {validator.reason}")
    yield validator
    _say(pytestconfig, f"[integration] {validator.summary()}")
    ops = ", ".join(f"{op}={n}" for op, n in sorted(validator.report.operations.items()))
    _say(pytestconfig, f"[integration] validated per operation: {ops}")


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


@pytest.fixture
def double(paypal_specs: SpecValidator) -> Iterator[PayPalDouble]:
    yield from iter_paypal_double(paypal_specs, stall_seconds=CLIENT_TIMEOUT_SECONDS * 2)


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


@pytest.fixture
async def api(runtime: Runtime, database_url: str, double: PayPalDouble) -> AsyncIterator[Api]:
    """The real service, its PayPal the double (`runtime` is the session's, for the clean
    tables and the ledger check after the test). Afterwards: every exchange with the
    double was validated against the specs, and none broke them."""
    built = Runtime.build(paypal_settings(database_url, double), database_url)
    assert isinstance(built.providers.paypal, PayPalProvider), "PayPal must be live here"
    assert built.providers.modes()["paypal"] == "live"
    try:
        async with service(built) as api:
            yield api
    finally:
        await built.aclose()
    assert_spec_checked(double)


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


# --------------------------------------------------------------------------- escrow


async def test_create_approve_execute_hold_then_release_captures(
    api: Api, double: PayPalDouble
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "150.00")
    created = await paypal_order(api, client, booking)
    order_id = created["paypal_payment_id"]
    payment_id = created["id"]

    # Orders v2, intent AUTHORIZE, our payment id on it, our return and cancel URLs.
    order = double.orders[order_id]
    assert order["intent"] == "AUTHORIZE"
    assert order["unit"]["amount"] == {"currency_code": "USD", "value": "150.00"}
    assert (
        order["unit"]["custom_id"]
        == order["unit"]["invoice_id"]
        == f"{PREFIX}-payment-{payment_id}"
    )
    assert order["experience"]["return_url"] == RETURN_URL
    assert order["experience"]["cancel_url"] == CANCEL_URL
    [create] = calls(double, "orders.create")
    assert create.request_id == f"{PREFIX}-payment-{payment_id}-hold"

    # Asking again while pending answers the same order (looked up, not created again).
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": "150.00",
            "currency": "USD",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] == payment_id and r.json()["paypal_payment_id"] == order_id
    assert len(double.orders) == 1

    # The buyer approves at PayPal and comes back with their PayerID: execute authorises.
    double.approve(order_id, payer_id=PAYER_ID)
    r = await execute(api, client, created)
    assert r.status_code == 200, r.text
    payment = r.json()
    assert payment["status"] == "held"
    auth = the_authorization(double, order_id)
    [authorize] = calls(double, "orders.authorize")
    assert authorize.request_id == f"{PREFIX}-payment-{payment_id}-confirm"
    row = await payment_row(api.runtime, payment_id)
    assert row.payer_id == PAYER_ID
    assert row.provider_authorization_id == auth["id"]
    assert row.hold_kind == HoldKind.AUTHORIZED
    # capture_by: the authorisation's own expiry, 29 days on.
    assert row.capture_by == auth["expiration_time"].replace(microsecond=0)
    assert payment["capture_by"] is not None
    assert datetime.fromisoformat(payment["capture_by"]) == row.capture_by
    assert (await api.earnings(pro))["pending_balance"] == "142.50"

    # Executing again (the payer reloads the return page) changes nothing at PayPal.
    r = await execute(api, client, created)
    assert r.status_code == 200 and r.json()["status"] == "held"
    assert len(calls(double, "orders.authorize")) == 1

    # Release: the authorisation is captured (final), the worker's share becomes available.
    r = await api.post(f"/payments/{payment_id}/release", client)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released" and r.json()["capture_by"] is None
    [capture] = calls(double, "authorizations.capture")
    assert capture.request_id == f"{PREFIX}-payment-{payment_id}-capture"
    [captured] = [double.captures[c] for c in auth["capture_ids"]]
    assert (captured["amount"], captured["final_capture"]) == (15000, True)
    assert auth["status"] == "CAPTURED"
    row = await payment_row(api.runtime, payment_id)
    assert row.provider_capture_id == captured["id"] and row.captured_amount == 15000
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["pending_balance"]) == ("142.50", "0.00")
    assert_spec_checked(
        double, "oauth.token", "orders.create", "orders.get", "orders.authorize",
        "authorizations.capture",
    )  # fmt: skip


async def test_full_refund_before_release_voids_the_authorization(
    api: Api, double: PayPalDouble
) -> None:
    client, pro, payment = await held(api, double, "80.00")
    auth = the_authorization(double, payment["paypal_payment_id"])
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "No-show"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refunded" and r.json()["refunded_amount"] == "80.00"
    assert auth["status"] == "VOIDED" and auth["capture_ids"] == []
    [void] = calls(double, "authorizations.void")
    assert void.request_id == f"{PREFIX}-payment-{payment['id']}-void"
    assert calls(double, "authorizations.capture") == []
    booking = await api.get(f"/bookings/{payment['booking_id']}", client)
    assert booking["status"] == "cancelled"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["pending_balance"]) == ("0.00", "0.00")
    # Nothing is left to release.
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409
    assert_spec_checked(double, "authorizations.void")


async def test_partial_refund_before_release_then_release_captures_less(
    api: Api, double: PayPalDouble
) -> None:
    client, pro, payment = await held(api, double, "150.00")
    auth = the_authorization(double, payment["paypal_payment_id"])
    before = len(double.calls)
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "50.00", "reason": "Less"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["refunded_amount"]) == ("held", "50.00")
    # Nothing at PayPal yet: the release captures less, and PayPal lets the rest go.
    assert len(double.calls) == before
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    [captured] = [double.captures[c] for c in auth["capture_ids"]]
    assert (captured["amount"], captured["final_capture"]) == (10000, True)
    assert auth["status"] == "CAPTURED"
    # 100.00 released: fee 5.00 (7.50 less 2.50 returned pro rata), worker 95.00.
    assert (await api.earnings(pro))["available_balance"] == "95.00"
    summary = await api.get("/payments/summary/client", client)
    assert (summary["total_refunded"], summary["total_released"]) == ("50.00", "100.00")


async def test_refunds_after_release_refund_the_capture(api: Api, double: PayPalDouble) -> None:
    _client, pro, payment = await released(api, double, "100.00")
    row = await payment_row(api.runtime, payment["id"])
    capture = double.captures[row.provider_capture_id or ""]
    admin = await api.admin()

    r = await api.post(
        "/payments/refund", admin, {"payment_id": payment["id"], "amount": "30.00", "reason": "P"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["refunded_amount"]) == ("released", "30.00")
    [first] = [double.refunds[i] for i in capture["refund_ids"]]
    assert first["amount"] == 3000 and capture["status"] == "PARTIALLY_REFUNDED"
    async with api.runtime.sessions() as session:
        ours = (
            await session.scalars(
                select(PaymentRefund)
                .where(PaymentRefund.payment_id == payment["id"])
                .order_by(PaymentRefund.id)
            )
        ).all()
    assert [r.provider_refund_id for r in ours] == [first["id"]]
    [call] = calls(double, "captures.refund")
    assert call.request_id == f"{PREFIX}-payment-{payment['id']}-refund-{ours[0].id}"
    # 30.00 back: 28.50 from the worker, 1.50 of the fee.
    assert (await api.earnings(pro))["available_balance"] == "66.50"

    # The rest (no amount: all that is left).
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "All"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["refunded_amount"]) == ("refunded", "100.00")
    assert [double.refunds[i]["amount"] for i in capture["refund_ids"]] == [3000, 7000]
    assert capture["status"] == "REFUNDED"
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 409
    assert_spec_checked(double, "captures.refund")


async def test_lost_answers_are_resumed_with_the_same_request_id(
    api: Api, double: PayPalDouble
) -> None:
    """A capture and a refund whose answers never come: the second attempt sends the same
    PayPal-Request-Id and PayPal answers the first outcome; nothing happens twice."""
    client, pro, payment = await held(api, double, "60.00")
    auth = the_authorization(double, payment["paypal_payment_id"])
    double.fail_next("authorizations.capture", "timeout_after")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 502, r.text
    assert "release again" in r.json()["detail"]
    assert len(auth["capture_ids"]) == 1  # PayPal captured; we did not hear
    assert (await payment_row(api.runtime, payment["id"])).provider_operation == "capture"
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    captures = calls(double, "authorizations.capture")
    assert [(c.request_id, c.replayed) for c in captures] == [
        (f"{PREFIX}-payment-{payment['id']}-capture", False),
        (f"{PREFIX}-payment-{payment['id']}-capture", True),
    ]
    assert len(auth["capture_ids"]) == 1
    assert (await api.earnings(pro))["available_balance"] == "57.00"

    # A refund whose answer is lost: the resolver resumes it under the same key.
    admin = await api.admin()
    double.fail_next("captures.refund", "500_after")
    r = await api.post(
        "/payments/refund", admin, {"payment_id": payment["id"], "amount": "10.00", "reason": "r"}
    )
    assert r.status_code == 502, r.text
    report = await background.resolve_operations(
        api.runtime,
        now=now() + timedelta(seconds=api.runtime.settings.provider_operation_stale_seconds + 1),
    )
    assert report.resumed == [payment["id"]]
    capture = double.captures[auth["capture_ids"][0]]
    assert [double.refunds[i]["amount"] for i in capture["refund_ids"]] == [1000]
    refunds = calls(double, "captures.refund")
    assert len({c.request_id for c in refunds}) == 1 and refunds[-1].replayed
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("released", "10.00")
    assert (await api.earnings(pro))["available_balance"] == "47.50"


# --------------------------------------------------------------------------- hold guard


async def test_hold_guard_reauthorizes_after_the_honour_period_and_captures_before_day_29(
    api: Api, double: PayPalDouble
) -> None:
    client, pro, payment = await held(api, double, "150.00")
    order_id = payment["paypal_payment_id"]
    original = the_authorization(double, order_id)
    start = now()
    row = await payment_row(api.runtime, payment["id"])
    capture_by = row.capture_by
    assert capture_by is not None and row.held_at is not None

    # Within the 3-day honour period nothing is due.
    report = await background.guard_holds(api.runtime, now=start + timedelta(days=2))
    assert not report
    # A partial refund before release: the renewal is for what is still held.
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "20.00", "reason": "p"}
    )
    assert r.status_code == 200, r.text

    # Day 4: PayPal no longer guarantees the funds; the guard renews the authorisation.
    double.advance(days=4)
    report = await background.guard_holds(api.runtime, now=start + timedelta(days=4))
    assert report.reauthorized == [payment["id"]] and report.captured == []
    [call] = calls(double, "authorizations.reauthorize")
    assert call.request_id == f"{PREFIX}-payment-{payment['id']}-reauthorize"
    renewed = the_authorization(double, order_id)
    assert renewed["id"] != original["id"] and renewed["amount"] == 13000
    assert (renewed["status"], original["status"]) == ("CREATED", "VOIDED")
    row = await payment_row(api.runtime, payment["id"])
    assert row.provider_authorization_id == renewed["id"]
    assert row.reauthorized_at is not None
    assert row.capture_by == capture_by  # the original's 29 days still apply
    assert row.hold_kind == HoldKind.AUTHORIZED and row.status == "held"
    assert "hold_guard.reauthorized" in await audit_actions(api.runtime, "payment", payment["id"])

    # Once only: a later run renews nothing more.
    double.advance(days=3)
    assert not await background.guard_holds(api.runtime, now=start + timedelta(days=7))
    assert len(calls(double, "authorizations.reauthorize")) == 1

    # Day 28.6 (within CAPTURE_MARGIN_HOURS of day 29): captured, still in escrow.
    double.advance(days=21.6)
    report = await background.guard_holds(api.runtime, now=start + timedelta(days=28.6))
    assert report.captured == [payment["id"]]
    [captured] = [double.captures[c] for c in renewed["capture_ids"]]
    assert captured["amount"] == 13000 and renewed["status"] == "CAPTURED"
    row = await payment_row(api.runtime, payment["id"])
    assert (row.status, row.hold_kind, row.capture_by) == ("held", HoldKind.CAPTURED, None)
    assert (await api.earnings(pro))["pending_balance"] == "123.50"

    # The client releases later: no call to PayPal, the money was captured already.
    before = len(double.calls)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert len(double.calls) == before
    assert (await api.earnings(pro))["available_balance"] == "123.50"
    # A refund after that refunds the capture the guard made.
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "All"})
    assert r.status_code == 200 and r.json()["status"] == "refunded"
    assert [double.refunds[i]["amount"] for i in captured["refund_ids"]] == [13000]
    assert_spec_checked(double, "authorizations.reauthorize", "authorizations.capture")


async def test_full_refund_after_reauthorization_voids_the_renewed_authorization(
    api: Api, double: PayPalDouble
) -> None:
    _client, pro, payment = await held(api, double, "40.00")
    double.advance(days=4)
    report = await background.guard_holds(api.runtime, now=now() + timedelta(days=4))
    assert report.reauthorized == [payment["id"]]
    renewed = the_authorization(double, payment["paypal_payment_id"])
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 200 and r.json()["status"] == "refunded"
    assert renewed["status"] == "VOIDED"
    [void] = calls(double, "authorizations.void")
    assert void.path.endswith(f"/{renewed['id']}/void")


async def test_authorization_voided_at_paypal_is_reported_with_paypals_debug_id(
    api: Api, double: PayPalDouble
) -> None:
    """Someone voided the authorisation in PayPal's dashboard: the guard's renewal is
    refused, so is the capture it then tries; both end in alerts naming PayPal's issue and
    debug_id, and the payment stays held for an operator to settle."""
    _client, _pro, payment = await held(api, double, "70.00")
    auth = the_authorization(double, payment["paypal_payment_id"])
    with double.lock:
        auth["status"] = "VOIDED"
    double.advance(days=4)
    report = await background.guard_holds(api.runtime, now=now() + timedelta(days=4))
    assert report.reauthorized == [] and report.captured == []
    assert "AUTHORIZATION_VOIDED" in report.not_done[payment["id"]]
    async with api.runtime.sessions() as session:
        alerts = {
            a.kind: a.message
            for a in await session.scalars(select(Alert).where(Alert.object_id == payment["id"]))
        }
    assert set(alerts) >= {"reauthorization_failed", "capture_failed"}
    for kind in ("reauthorization_failed", "capture_failed"):
        assert "AUTHORIZATION_VOIDED" in alerts[kind]
        assert any(debug_id in alerts[kind] for debug_id in double.debug_ids), alerts[kind]
    row = await payment_row(api.runtime, payment["id"])
    assert (row.status, row.hold_kind, row.provider_operation) == (
        "held",
        HoldKind.AUTHORIZED,
        None,
    )


# --------------------------------------------------------------------------- errors


async def test_paypal_errors_become_our_detail_with_paypals_debug_id(
    api: Api, double: PayPalDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handwork_payments.providers.paypal")
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "25.00")
    created = await paypal_order(api, client, booking)

    # Executed before the buyer approved: PayPal's 422 ORDER_NOT_APPROVED.
    r = await execute(api, client, created)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"detail"}
    detail = r.json()["detail"]
    debug_id = double.debug_ids[-1]
    assert "UNPROCESSABLE_ENTITY" in detail and "ORDER_NOT_APPROVED" in detail
    assert f"debug_id {debug_id}" in detail
    assert any(debug_id in m and "ORDER_NOT_APPROVED" in m for m in caplog.messages)
    shown = await api.get(f"/payments/{created['id']}", client)
    assert shown["status"] == "pending"  # nothing decided: the buyer may still approve

    # The buyer's funding is declined when we authorise: 402, the payment fails.
    double.approve(created["paypal_payment_id"], decline="PAYER_CANNOT_PAY")
    r = await execute(api, client, created)
    assert r.status_code == 402, r.text
    detail = r.json()["detail"]
    assert "PAYER_CANNOT_PAY" in detail and double.debug_ids[-1] in detail
    shown = await api.get(f"/payments/{created['id']}", client)
    assert shown["status"] == "failed" and "PAYER_CANNOT_PAY" in shown["failure_reason"]

    # PayPal failing (5xx) is a 502 that says to retry; its debug_id is in our log.
    booking = await api.booking(client, pro, "25.00")
    double.fail_next("orders.create", "500_before")
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": "25.00",
            "currency": "USD",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        },
    )
    assert r.status_code == 502 and set(r.json()) == {"detail"}
    assert "retry" in r.json()["detail"]
    assert any(double.debug_ids[-1] in m for m in caplog.messages)
    # The retry (same key) creates the order once.
    created = await paypal_order(api, client, booking)
    assert [c.request_id for c in calls(double, "orders.create")][-2:] == [
        f"{PREFIX}-payment-{created['id']}-hold"
    ] * 2
    assert_spec_checked(double, "orders.create", "orders.authorize")


# --------------------------------------------------------------------------- payouts


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


def stale(api: Api) -> datetime:
    return now() + timedelta(seconds=api.runtime.settings.provider_operation_stale_seconds + 1)


async def test_payouts_go_in_one_batch_and_settle_by_polling(
    api: Api, double: PayPalDouble
) -> None:
    pro, _admin, requested = await payouts_to(
        api,
        double,
        [
            ("pro@example.com", "10.00"),
            ("locked+fail@example.com", "20.00"),
            ("newcomer+unclaimed@example.com", "30.00"),
        ],
    )
    ids = [p["id"] for p in requested]
    assert (await api.earnings(pro))["available_balance"] == "35.00"

    # The batch job (hp:send_payout_batch) sends every processed PayPal payout at once.
    assert await payouts.send_batch(api.runtime, "paypal") == ids
    [batch] = double.batches.values()
    key = f"payout-batch-{ids[0]}"
    assert batch["sender_batch_header"]["sender_batch_id"] == f"{PREFIX}-{key}"
    [post] = calls(double, "payouts.create")
    assert post.request_id == f"{PREFIX}-{key}"
    items = [double.items[i] for i in batch["item_ids"]]
    assert [i["payout_item"]["sender_item_id"] for i in items] == [
        f"{PREFIX}-payout-{i}" for i in ids
    ]
    assert [i["payout_item"]["receiver"] for i in items] == [
        "pro@example.com",
        "locked+fail@example.com",
        "newcomer+unclaimed@example.com",
    ]
    assert [i["amount"] for i in items] == [1000, 2000, 3000]
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["processing"] * 3
    assert [r.paypal_payout_id for r in rows] == [i["payout_item_id"] for i in items]
    assert {r.paypal_batch_id for r in rows} == {batch["payout_batch_id"]}
    assert {r.batch_key for r in rows} == {key}
    # Nothing more to send.
    assert await payouts.send_batch(api.runtime, "paypal") == []

    # PayPal processes the batch; the resolver polls it: one GET for the batch, not one
    # per payout.
    double.process_payouts()
    gets_before = len(calls(double, "payouts.get"))
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert len(calls(double, "payouts.get")) == gets_before + 1
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["completed", "failed", "processing"]
    assert "RECEIVER_ACCOUNT_LOCKED" in (rows[1].failure_reason or "")
    earnings = await api.earnings(pro)
    # 95.00 - 10.00 paid - 30.00 still out; the failed 20.00 is back.
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("55.00", "10.00")

    # The unclaimed item is returned when its 30 days pass: failed, its amount back.
    double.set_payout_status(items[2]["payout_item_id"], "RETURNED")
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert (await payout_row(api.runtime, ids[2])).status == "failed"
    assert (await api.earnings(pro))["available_balance"] == "85.00"
    gets = calls(double, "payouts.get")
    assert gets and all(c.path == f"/v1/payments/payouts/{batch['payout_batch_id']}" for c in gets)
    assert len(calls(double, "payouts.create")) == 1
    assert_spec_checked(double, "payouts.create", "payouts.get")


async def test_a_batch_whose_answer_was_lost_is_never_paid_twice(
    api: Api, double: PayPalDouble
) -> None:
    pro, admin, requested = await payouts_to(
        api, double, [("a@example.com", "10.00"), ("b@example.com", "15.00")]
    )
    ids = [p["id"] for p in requested]
    key = f"payout-batch-{ids[0]}"
    double.fail_next("payouts.create", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    assert len(double.batches) == 1  # PayPal made it; we never heard
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [(r.status, r.batch_key, r.paypal_payout_id) for r in rows] == [
        ("processing", key, None)
    ] * 2
    # The batch job's next run leaves them alone: they are marked as sent.
    assert await payouts.send_batch(api.runtime, "paypal") == []

    # The resolver sends the same batch under the same key: PayPal answers the first one.
    outcome = await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert outcome == {ids[0]: "processing", ids[1]: "processing"}
    posts = calls(double, "payouts.create")
    wire = f"{PREFIX}-{key}"
    assert [(c.request_id, c.replayed) for c in posts] == [(wire, False), (wire, True)]
    assert len(double.batches) == 1 and len(double.items) == 2
    [batch] = double.batches.values()
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.paypal_payout_id for r in rows] == batch["item_ids"]

    # A second batch lost, and this time PayPal forgot the request id as well: the reused
    # sender_batch_id is refused with a link to the original, which is what we take.
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "5.00", "payment_method": "paypal"}
    )
    assert r.status_code == 201, r.text
    third = r.json()["id"]
    await api.post(f"/payments/payouts/{third}/process", admin)
    double.fail_next("payouts.create", "500_after")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    double.forget_request_ids()
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert [c.status for c in calls(double, "payouts.create")] == [201, 201, 500, 400]
    assert len(double.batches) == 2 and len(double.items) == 3
    assert (await payout_row(api.runtime, third)).paypal_payout_id in double.items

    double.process_payouts()
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert [(await payout_row(api.runtime, i)).status for i in [*ids, third]] == ["completed"] * 3
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("65.00", "30.00")
    assert_spec_checked(double, "payouts.create", "payouts.get")


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


# --------------------------------------------------------------------------- chargebacks


def dispute_resource(
    dispute_id: str, capture_id: str, payment_id: int, amount: str, outcome: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "dispute_id": dispute_id,
        "create_time": "2026-01-05T10:00:00Z",
        "update_time": "2026-01-05T10:00:00Z",
        "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        "status": "OPEN",
        "dispute_amount": {"currency_code": "USD", "value": amount},
        "disputed_transactions": [
            {
                "seller_transaction_id": capture_id,
                "invoice_number": f"payment-{payment_id}",
                "custom": f"payment-{payment_id}",
            }
        ],
    }
    if outcome is not None:
        resource["status"] = "RESOLVED"
        resource["dispute_outcome"] = {"outcome_code": outcome}
    return resource


async def deliver_dispute(
    api: Api, double: PayPalDouble, specs: SpecValidator, event_type: str, resource: dict[str, Any]
) -> WebhookDelivery:
    # What we deliver is what PayPal's disputes spec describes.
    assert specs.validate_schema("disputes", "dispute", resource) == []
    return await deliver(api, double, event_type, resource)


def reversal_resource(double: PayPalDouble, capture_id: str, amount: str) -> dict[str, Any]:
    """PAYMENT.CAPTURE.REVERSED as PayPal sends it: refund-shaped, pointing up at the
    capture it takes back."""
    return {
        "id": f"REV{secrets.token_hex(7).upper()}",
        "status": "COMPLETED",
        "amount": {"currency_code": "USD", "value": f"-{amount}"},
        "create_time": "2026-01-06T10:00:00Z",
        "update_time": "2026-01-06T10:00:00Z",
        "links": [
            {
                "href": f"https://api-m.sandbox.paypal.com/v2/payments/captures/{capture_id}",
                "rel": "up",
                "method": "GET",
            }
        ],
    }


async def captured_in_escrow(
    api: Api, double: PayPalDouble, amount: str
) -> tuple[Party, Party, dict[str, Any], str]:
    """A held payment whose authorisation the hold guard has captured (day 28.6): a buyer
    can dispute only captured money."""
    client, pro, payment = await held(api, double, amount)
    double.advance(days=28.6)
    report = await background.guard_holds(api.runtime, now=now() + timedelta(days=28.6))
    assert report.captured == [payment["id"]]
    row = await payment_row(api.runtime, payment["id"])
    assert row.provider_capture_id is not None
    return client, pro, payment, row.provider_capture_id


async def dispute_rows(runtime: Runtime, payment_id: int) -> list[PaymentDispute]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(PaymentDispute)
            .where(PaymentDispute.payment_id == payment_id)
            .order_by(PaymentDispute.id)
        )
        return list(rows.all())


async def test_chargeback_freezes_held_funds_and_a_win_unfreezes_them(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    client, pro, payment, capture_id = await captured_in_escrow(api, double, "100.00")
    gets = len(calls(double, "captures.get"))
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-1001", capture_id, payment["id"], "100.00"),
    )
    # The dispute names the capture: the adapter asked PayPal which order it belongs to,
    # on receipt (the processing job is locked per order) and when processed.
    assert len(calls(double, "captures.get")) == gets + 2
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert shown["status"] == "disputed"
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert (dispute.status, dispute.provider_dispute_id, dispute.initiated_by) == (
        "open",
        "PP-D-1001",
        None,
    )
    listed = (await api.get("/payments/disputes", client))["items"]
    assert [d["id"] for d in listed] == [dispute.id]
    # Frozen: neither released nor refunded, and our admins do not decide it.
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 409
    admin = await api.admin()
    r = await api.post(
        f"/payments/disputes/{dispute.id}/resolve",
        admin,
        {"outcome": "release", "resolution_notes": "mine"},
    )
    assert r.status_code == 409

    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource(
            "PP-D-1001", capture_id, payment["id"], "100.00", "RESOLVED_SELLER_FAVOUR"
        ),
    )
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert dispute.status == "closed" and "RESOLVED_SELLER_FAVOUR" in (
        dispute.resolution_notes or ""
    )
    assert (await api.get(f"/payments/{payment['id']}", client))["status"] == "held"
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert (await api.earnings(pro))["available_balance"] == "95.00"
    assert_spec_checked(double, "captures.get", "webhooks.verify")


async def test_chargeback_lost_in_part_then_the_rest_is_released(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    """PayPal reverses the disputed 40.00 while the dispute is open, then the buyer wins:
    40.00 taken once (at the reversal), the other 60.00 released."""
    client, pro, payment, capture_id = await captured_in_escrow(api, double, "100.00")
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-2002", capture_id, payment["id"], "40.00"),
    )
    reversal = reversal_resource(double, capture_id, "40.00")
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("disputed", "40.00")
    # Delivered again as a new event: the same reversal, not booked twice.
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource("PP-D-2002", capture_id, payment["id"], "40.00", "RESOLVED_BUYER_FAVOUR"),
    )
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("held", "40.00")
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert (dispute.status, dispute.refund_amount) == ("closed", 4000)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # 60.00 released: fee 3.00, worker 57.00.
    assert (await api.earnings(pro))["available_balance"] == "57.00"


async def test_chargeback_lost_after_release_is_taken_once_from_the_worker(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    client, pro, payment = await released(api, double, "100.00")
    capture_id = (await payment_row(api.runtime, payment["id"])).provider_capture_id or ""
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-3003", capture_id, payment["id"], "100.00"),
    )
    # Released money is not in escrow any more: recorded, with an alert, not frozen.
    assert (await api.get(f"/payments/{payment['id']}", client))["status"] == "released"
    assert any("PP-D-3003" in m for m in await alerts_of(api.runtime, "dispute_opened"))
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource("PP-D-3003", capture_id, payment["id"], "100.00", "ACCEPTED"),
    )
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", "100.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    # PayPal then refunds the buyer from our balance: that is the dispute's money.
    refund = await paypal(api).refund(
        ref=HoldRef(payment["paypal_payment_id"], None, capture_id),
        amount=10000,
        currency="USD",
        idempotency_key="paypal-dispute-PP-D-3003",
    )
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", double.refund_resource(refund.refund_id))
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert shown["refunded_amount"] == "100.00"
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    assert "payment.refund_covered" in await audit_actions(api.runtime, "payment", payment["id"])
    async with api.runtime.sessions() as session:
        kinds = await session.scalars(
            select(PaymentRefund.kind).where(PaymentRefund.payment_id == payment["id"])
        )
        assert list(kinds) == ["chargeback"]


# --------------------------------------------------------------------------- refunds at PayPal


async def test_refund_made_outside_our_api_is_recorded_once(api: Api, double: PayPalDouble) -> None:
    # Refunded in part before release (PayPal captured only 100.00 of 150.00): PayPal's
    # refund total on the capture never counts that 50.00.
    client, pro, payment = await held(api, double, "150.00")
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "50.00", "reason": "p"}
    )
    assert r.status_code == 200, r.text
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    row = await payment_row(api.runtime, payment["id"])
    ref = HoldRef(
        payment["paypal_payment_id"], row.provider_authorization_id, row.provider_capture_id
    )
    assert (await api.earnings(pro))["available_balance"] == "95.00"

    # Our own refund's webhook: ours, nothing more.
    admin = await api.admin()
    r = await api.post(
        "/payments/refund", admin, {"payment_id": payment["id"], "amount": "10.00", "reason": "o"}
    )
    assert r.status_code == 200, r.text
    capture = double.captures[row.provider_capture_id or ""]
    ours = capture["refund_ids"][-1]
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", double.refund_resource(ours))
    assert (await api.get(f"/payments/{payment['id']}", client))["refunded_amount"] == "60.00"

    # 25.00 refunded in PayPal's dashboard: recorded as a refund, from the worker pro rata.
    outside = await paypal(api).refund(
        ref=ref, amount=2500, currency="USD", idempotency_key="dashboard-refund-1"
    )
    resource = double.refund_resource(outside.refund_id)
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", resource)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("released", "85.00")
    async with api.runtime.sessions() as session:
        recorded = (
            await session.scalars(
                select(PaymentRefund).where(PaymentRefund.provider_refund_id == outside.refund_id)
            )
        ).all()
    assert [(r.amount, r.requested_by, r.before_release) for r in recorded] == [(2500, None, False)]
    assert len(await alerts_of(api.runtime, "external_refund")) == 1
    # The same refund told again (a new event, or the same one replayed): nothing more.
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", resource)
    [stored] = [d for d in await deliveries(api.runtime)][-1:]
    admin_replay = await api.post(f"/admin/webhooks/{stored.id}/replay", admin)
    assert admin_replay.status_code == 200, admin_replay.text
    await webhooks.process(api.runtime, stored.id)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert shown["refunded_amount"] == "85.00"
    # 100.00 released, 35.00 of it refunded: fee 5.00 - 1.75, worker 95.00 - 33.25.
    assert (await api.earnings(pro))["available_balance"] == "61.75"


async def test_capture_reversed_without_a_dispute_is_recorded_once(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    client, pro, payment = await released(api, double, "80.00")
    capture_id = (await payment_row(api.runtime, payment["id"])).provider_capture_id or ""
    reversal = reversal_resource(double, capture_id, "80.00")
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", "80.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    [reversed_alert] = await alerts_of(api.runtime, "capture_reversed")
    assert reversal["id"] in reversed_alert
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    assert (await api.get(f"/payments/{payment['id']}", client))["refunded_amount"] == "80.00"

    # Its dispute shows up afterwards and is lost: the reversal was that money already.
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-4004", capture_id, payment["id"], "80.00"),
    )
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource("PP-D-4004", capture_id, payment["id"], "80.00", "RESOLVED_BUYER_FAVOUR"),
    )
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert (dispute.status, dispute.refund_amount) == ("closed", 8000)
    async with api.runtime.sessions() as session:
        refunds = (
            await session.scalars(
                select(PaymentRefund).where(PaymentRefund.payment_id == payment["id"])
            )
        ).all()
    # A reversal by its kind (not by its reason's words), counted towards the dispute.
    assert [(r.amount, r.dispute_id, r.kind) for r in refunds] == [(8000, dispute.id, "reversal")]
    assert (await api.earnings(pro))["available_balance"] == "0.00"


# --------------------------------------------------------------------------- payout webhooks


async def test_payout_items_settled_by_webhooks(api: Api, double: PayPalDouble) -> None:
    pro, _admin, requested = await payouts_to(
        api,
        double,
        [
            ("paid@example.com", "10.00"),
            ("locked+fail@example.com", "20.00"),
            ("newcomer+unclaimed@example.com", "30.00"),
        ],
    )
    ids = [p["id"] for p in requested]
    await payouts.send_batch(api.runtime, "paypal")
    double.process_payouts()
    items = [(await payout_row(api.runtime, i)).paypal_payout_id or "" for i in ids]

    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(items[0])
    )
    await deliver(api, double, "PAYMENT.PAYOUTS-ITEM.FAILED", double.payout_item_resource(items[1]))
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.UNCLAIMED", double.payout_item_resource(items[2])
    )
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["completed", "failed", "processing"]
    assert "RECEIVER_ACCOUNT_LOCKED" in (rows[1].failure_reason or "")
    [unclaimed] = await alerts_of(api.runtime, "payout_unclaimed")
    assert f"#{ids[2]}" in unclaimed and "RECEIVER_UNREGISTERED" in unclaimed
    assert "payout.unclaimed" in await audit_actions(api.runtime, "payout", ids[2])
    # UNCLAIMED again changes nothing; RETURNED (30 days unclaimed) fails it.
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.UNCLAIMED", double.payout_item_resource(items[2])
    )
    assert len(await alerts_of(api.runtime, "payout_unclaimed")) == 1
    double.set_payout_status(items[2], "RETURNED")
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.RETURNED", double.payout_item_resource(items[2])
    )
    assert (await payout_row(api.runtime, ids[2])).status == "failed"
    # A late SUCCEEDED of the failed one never completes it.
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(items[1])
    )
    assert (await payout_row(api.runtime, ids[1])).status == "failed"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("85.00", "10.00")

    # A completed payout PayPal returns later (the receiver refused it): back to available.
    double.set_payout_status(items[0], "RETURNED")
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.RETURNED", double.payout_item_resource(items[0])
    )
    assert (await payout_row(api.runtime, ids[0])).status == "failed"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("95.00", "0.00")
    # An item that is not ours: recorded, nothing applied.
    stranger = {
        **double.payout_item_resource(items[0]),
        "payout_item_id": "NOTOURS000001",
        "payout_item": {
            "receiver": "x@example.com",
            "amount": {"currency": "USD", "value": "1.00"},
            "sender_item_id": "invoice-77",
        },
    }
    await deliver(api, double, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", stranger)
    assert_spec_checked(double, "payouts.create", "payouts.get", "webhooks.verify")


@pytest.mark.parametrize("link", ["details", "none"])
async def test_a_duplicate_batch_paypal_does_not_link_is_never_treated_as_refused(
    link: Literal["details", "none"], api: Api, double: PayPalDouble
) -> None:
    """PayPal forgot the request id and refuses the reused sender_batch_id - with the link
    to the batch inside the error's detail, or with no link at all (both seen outside the
    spec). A refusal would hand the money back to the worker, who could then be paid
    twice: the link is followed, and without one the payouts stay processing until the
    items' webhooks (which carry our sender_item_id) settle them."""
    double.duplicate_batch_link = link
    pro, _admin, requested = await payouts_to(
        api, double, [("a@example.com", "10.00"), ("b+fail@example.com", "15.00")]
    )
    ids = [p["id"] for p in requested]
    double.fail_next("payouts.create", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    double.forget_request_ids()
    outcome = await payouts.resolve_payouts(api.runtime, now=stale(api))
    [batch] = double.batches.values()
    assert len(double.items) == 2
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["processing"] * 2
    if link == "details":
        assert [r.paypal_payout_id for r in rows] == batch["item_ids"]
    else:
        assert all(v.startswith("not resolved") for v in outcome.values()), outcome
        assert [r.paypal_payout_id for r in rows] == [None, None]
        # Sent again, never a refusal; PayPal has no look-up by sender_batch_id, so after
        # PAYPAL_DUPLICATE_BATCH_MAX_TRIES (3) the payouts are parked for an admin, alerted,
        # and never sent again.
        await payouts.resolve_payouts(api.runtime, now=stale(api))
        rows = [await payout_row(api.runtime, i) for i in ids]
        assert [r.status for r in rows] == ["processing"] * 2
        assert all((r.held_reason or "").startswith("batch_not_found: ") for r in rows)
        [unresolved] = await alerts_of(api.runtime, "payout_batch_unresolved")
        assert f"payout-batch-{ids[0]}" in unresolved
        assert len(await alerts_of(api.runtime, "payout_held")) == 2
        posts = len(calls(double, "payouts.create"))
        assert await payouts.resolve_payouts(api.runtime, now=stale(api)) == {}
        assert len(calls(double, "payouts.create")) == posts
    assert (await api.earnings(pro))["available_balance"] == "70.00"

    # PayPal pays the batch; its item webhooks name our payouts by sender_item_id.
    double.process_payouts()
    for item_id, event_type in zip(
        batch["item_ids"],
        ["PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "PAYMENT.PAYOUTS-ITEM.FAILED"],
        strict=True,
    ):
        await deliver(api, double, event_type, double.payout_item_resource(item_id))
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["completed", "failed"]
    assert [r.paypal_payout_id for r in rows] == batch["item_ids"]
    assert [r.held_reason for r in rows] == [None, None]  # the webhooks were the answer
    assert {r.paypal_batch_id for r in rows} == {batch["payout_batch_id"]}
    assert len(double.batches) == 1 and len(double.items) == 2
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("85.00", "10.00")


async def test_payout_batch_resend_stops_at_paypals_duplicate_window(
    api: Api, double: PayPalDouble
) -> None:
    """PayPal refuses a reused sender_batch_id for 30 days. A batch still unknown after 25
    is not sent again (it could be paid twice): an operator is told."""
    _pro, _admin, requested = await payouts_to(api, double, [("late@example.com", "10.00")])
    [payout_id] = [p["id"] for p in requested]
    double.fail_next("payouts.create", "500_before")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    assert double.batches == {}
    async with api.runtime.sessions() as session, session.begin():
        row = await session.get(WorkerPayout, payout_id)
        assert row is not None
        row.processed_at = now() - timedelta(days=26)
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert double.batches == {} and len(calls(double, "payouts.create")) == 1
    assert (await payout_row(api.runtime, payout_id)).status == "processing"
    [unresolved] = await alerts_of(api.runtime, "payout_batch_unresolved")
    assert "not sent again" in unresolved


async def test_end_to_end_with_the_worker(api: Api, double: PayPalDouble) -> None:
    """The jobs as production runs them: the batch job sends the payout an admin processed,
    PayPal's webhook is verified on receipt and applied by its processing job."""
    async with running_worker(api.runtime, concurrency=2, name="paypal-e2e"):
        _, pro, _ = await released(api, double, "50.00")
        r = await api.client.put(
            "/api/v1/payments/payout-methods",
            json={"paypal_email": "pro@example.com"},
            headers=pro.headers,
        )
        assert r.status_code == 200, r.text
        r = await api.post(
            "/payments/payouts/request", pro, {"amount": "47.50", "payment_method": "paypal"}
        )
        assert r.status_code == 201, r.text
        payout_id = r.json()["id"]
        admin = await api.admin()
        r = await api.post(f"/payments/payouts/{payout_id}/process", admin)
        assert r.status_code == 200, r.text

        async def sent() -> str | None:
            return (await payout_row(api.runtime, payout_id)).paypal_payout_id

        item_id = await eventually(sent)
        double.process_payouts()
        headers, body = double.deliver(
            "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(item_id)
        )
        r = await post_webhook(api, headers, body)
        assert r.status_code == 200, r.text

        async def completed() -> bool:
            return (await payout_row(api.runtime, payout_id)).status == "completed"

        await eventually(completed)
    [batch] = double.batches.values()
    assert batch["sender_batch_header"]["sender_batch_id"] == f"{PREFIX}-payout-batch-{payout_id}"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("0.00", "47.50")
    [delivery] = await deliveries(api.runtime)
    assert delivery.status == DeliveryStatus.PROCESSED


# --------------------------------------------------------------------------- PayPal's sandbox

SANDBOX = (
    os.environ.get("PAYPAL_MODE") == "sandbox"
    and bool(os.environ.get("PAYPAL_CLIENT_ID"))
    and bool(os.environ.get("PAYPAL_CLIENT_SECRET"))
)
sandbox_only = pytest.mark.skipif(
    not SANDBOX,
    reason="PayPal sandbox run: set PAYPAL_MODE=sandbox, PAYPAL_CLIENT_ID and "
    "PAYPAL_CLIENT_SECRET (and PAYPAL_WEBHOOK_ID for the webhook check)",
)


@pytest.fixture
async def sandbox(
    runtime: Runtime, database_url: str, paypal_specs: SpecValidator
) -> AsyncIterator[tuple[Api, ValidatingTransport]]:
    """The real service against PayPal's sandbox, every exchange validated against the
    specs on its way (ValidatingTransport). Our ids start at random values: PayPal keeps
    invoice ids and sender_batch_ids of earlier runs on the same sandbox account."""
    settings = make_settings(
        database_url,
        paypal_client_id=os.environ["PAYPAL_CLIENT_ID"],
        paypal_client_secret=os.environ["PAYPAL_CLIENT_SECRET"],
        paypal_mode="sandbox",
        paypal_api_base=None,
        paypal_webhook_id=os.environ.get("PAYPAL_WEBHOOK_ID") or None,
        paypal_webhook_verification="api",
        provider_timeout_seconds=30,
    )
    async with runtime.engine.begin() as conn:
        for sequence in ("payments_id_seq", "worker_payouts_id_seq"):
            start = secrets.randbelow(10**12) + 10**9
            await conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} RESTART WITH {start}")
    built = Runtime.build(settings, database_url)
    transport = ValidatingTransport(paypal_specs)
    built_paypal = built.providers.paypal
    assert isinstance(built_paypal, PayPalProvider)
    await built_paypal.aclose()
    built.providers = replace(
        built.providers,
        paypal=PayPalProvider(settings, transport=transport, ids=built.providers.ids),
    )
    assert isinstance(built.providers.paypal, PayPalProvider)
    assert built.providers.paypal.api_base == "https://api-m.sandbox.paypal.com"
    try:
        async with service(built) as api:
            yield api, transport
    finally:
        await built.aclose()
    assert transport.exchanges > 0
    assert transport.violations == [], "\n".join(transport.violations)


@sandbox_only
async def test_sandbox_order_created_and_paypals_refusal_mapped(
    sandbox: tuple[Api, ValidatingTransport],
) -> None:
    """What runs without a human buyer: the order (our payment id on it, the approval URL
    on paypal.com) and PayPal's refusal to authorise it unapproved, as our {"detail"} with
    PayPal's debug_id."""
    api, transport = sandbox
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "12.34")
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": "12.34",
            "currency": "USD",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    approval = urlsplit(created["approval_url"])
    assert approval.scheme == "https" and (approval.hostname or "").endswith("paypal.com")
    r = await execute(api, client, created)
    assert r.status_code in (400, 409), r.text
    detail = r.json()["detail"]
    assert "debug_id" in detail and ("NOT_APPROVED" in detail or "PAYER_ACTION" in detail)
    assert (await api.get(f"/payments/{created['id']}", client))["status"] == "pending"
    assert transport.exchanges >= 3


@sandbox_only
async def test_sandbox_payouts_in_one_batch_never_paid_twice(
    sandbox: tuple[Api, ValidatingTransport],
) -> None:
    """Two payouts in one real batch (the balance comes from a Stripe-simulated payment:
    PayPal's sandbox buyer cannot approve without a browser), polled, and the batch sent
    again under its key: PayPal answers the same batch."""
    api, transport = sandbox
    client, pro, payment = await api.held_payment("20.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    receiver = os.environ.get("PAYPAL_SANDBOX_RECEIVER", "handwork-sandbox-receiver@example.com")
    r = await api.client.put(
        "/api/v1/payments/payout-methods", json={"paypal_email": receiver}, headers=pro.headers
    )
    assert r.status_code == 200, r.text
    admin = await api.admin()
    ids = []
    for amount in ("1.00", "2.00"):
        r = await api.post(
            "/payments/payouts/request", pro, {"amount": amount, "payment_method": "paypal"}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        await api.post(f"/payments/payouts/{ids[-1]}/process", admin)
    assert await payouts.send_batch(api.runtime, "paypal") == ids
    rows = [await payout_row(api.runtime, i) for i in ids]
    if all(r.status == "failed" for r in rows):
        pytest.skip(f"PayPal refused the payout batch: {rows[0].failure_reason}")
    batch_ids = {r.paypal_batch_id for r in rows}
    assert len(batch_ids) == 1 and None not in batch_ids
    provider = paypal(api)
    again = await provider.send_payout_batch(
        [payouts.order_of(r) for r in rows], batch_key=rows[0].batch_key or ""
    )
    assert {t.batch_id for t in again} == batch_ids
    await asyncio.sleep(5)
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    statuses = [(await payout_row(api.runtime, i)).status for i in ids]
    assert set(statuses) <= {"processing", "completed", "failed"}
    assert transport.violations == []


@sandbox_only
async def test_sandbox_forged_webhook_refused(sandbox: tuple[Api, ValidatingTransport]) -> None:
    api, _transport = sandbox
    if not api.runtime.settings.paypal_webhook_id:
        pytest.skip("PAYPAL_WEBHOOK_ID is not set: PayPal cannot verify webhooks for us")
    key, _ = throwaway_certificate()
    body = event_body("PAYMENT.CAPTURE.COMPLETED", {"id": "FORGED0000000001"})
    headers = signed(key, body, api.runtime.settings.paypal_webhook_id, CERT_URL)
    r = await post_webhook(api, headers, body)
    assert r.status_code == 400, r.text
    assert await deliveries(api.runtime) == []
