"""PayPal for real, escrow: orders held, released by capture, refunded before and after
release, lost answers resumed, the hold guard's reauthorization, PayPal's errors as ours.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from handwork_payments.kit.clock import now
from handwork_payments.models import Alert, HoldKind, PaymentRefund
from handwork_payments.payments import background
from tests.faults import audit_actions, payment_row
from tests.helpers import Api
from tests.peers.paypal_double import PayPalDouble
from tests.providers.paypal.harness import (
    CANCEL_URL,
    PAYER_ID,
    PREFIX,
    RETURN_URL,
    assert_spec_checked,
    calls,
    execute,
    held,
    paypal_order,
    released,
    the_authorization,
)

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
    summary = await api.get("/payments/summary/client", client, currency="USD")
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
